//! `national`: a compressed day of a country's drone traffic against one DSS (or one pool),
//! open loop, then the day's peak hour multiplied until the DSS saturates (SCALING.md).
//!
//! **The load.** InterUSS's sizing note puts a US-sized country at about 18.6 new flights per
//! second on average, peaks of 3.5 times that, and several DSS writes per flight. Each simulated
//! flight does what a USS and its peers do for a real one:
//!
//! - plan: a query of the flight's area, the operational intent created with the OVNs found
//!   (re-queried and retried after a 409), and for one flight in five a subscription over its
//!   area (a USS watching where it flies);
//! - activation: the intent updated to Activated, with its key;
//! - network Remote ID: the flight's ISA created, moved [`ISA_UPDATES`] times, each move
//!   followed by a display provider's search of the area around it;
//! - end: the ISA, the intent and the subscription deleted.
//!
//! That is 8.4 writes and 5 reads per flight: 156 writes/s on average and about 560 at the peak for
//! the US (scale 1).
//!
//! **The compression.** The day's 24 hours are replayed as 24 slots of `slot` seconds each, at
//! each hour's real rate of new flights: write and read rates are the real ones, hour by hour.
//! What is compressed is each flight's life (its requests are spread over [`LIFECYCLE`] instead
//! of half an hour), so fewer flights are live at once than in a real day; a preload of live
//! intents spread over the country stands in for the rest of the live record.
//!
//! **Where.** 85% of flights start within about 30 km of one of twenty metropolitan areas
//! (weighted by population), 15% anywhere in the contiguous United States.
//!
//! **Open loop.** Flights start on schedule whether or not earlier ones are done; a flight that
//! finds [`SHED_FACTOR`] times the flights the rate should keep under way is shed (counted: the
//! DSS is not keeping up). An hour is *saturated* when it sheds flights, its writes' p99 exceeds 1 s, or more than
//! 1% of its requests fail.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use api::{
    LatLngPoint, Polygon, PutOperationalIntentReferenceParameters, PutSubscriptionParameters, Volume3D, Volume4D,
};
use bytes::Bytes;
use client::ClientError;
use geo4d::Timestamp;
use hyper::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::conn::GenClient;
use crate::shapes::{self, now};
use crate::stats::{Recorder, WorkloadReport};
use crate::{mint, Ctx};

/// New flights per second in a US-sized country, averaged over the day (InterUSS sizing).
pub const US_MEAN_FLIGHTS_PER_S: f64 = 18.6;
/// The day's shape: relative new-flight rate per hour (local time, one time zone for all: the
/// country's zones would flatten the peak, so this is the harder case), a bell around 13:30
/// (sigma 2.4 h) over a night floor. Normalized to a mean of 1 in [`hour_factor`]; its peak is
/// then 3.6 times the mean, InterUSS's 3.5 rounded up.
const DAY_SHAPE: [f64; 24] = [
    0.04, 0.04, 0.04, 0.04, 0.041, 0.044, 0.054, 0.084, 0.154, 0.289, 0.498, 0.747, 0.957, 1.04, 0.957, 0.747, 0.498,
    0.289, 0.154, 0.084, 0.054, 0.044, 0.041, 0.04,
];
/// A simulated flight's requests are spread over this much wall time.
const LIFECYCLE: Duration = Duration::from_secs(4);
/// Moves of a flight's ISA (each followed by a display provider's search).
const ISA_UPDATES: usize = 3;
/// One flight in this many subscribes to its area.
const SUBSCRIBE_EVERY: u64 = 5;
/// Flights under way at once before new ones are shed, as a multiple of what the rate and
/// the lifecycle keep under way when the DSS answers at once: beyond it, flights take over
/// twice their life, the DSS is not keeping up.
const SHED_FACTOR: f64 = 2.0;
/// Connections per DSS instance the flights share.
const CONNECTIONS_PER_INSTANCE: usize = 48;
/// Multiples of the national peak hour tried after the day, in order, until one saturates.
const RAMP: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Twenty US metropolitan areas: (lat, lng, population in millions).
const METROS: [(f64, f64, f64); 20] = [
    (40.71, -74.01, 19.5),
    (34.05, -118.24, 13.0),
    (41.88, -87.63, 9.4),
    (32.78, -96.80, 7.6),
    (29.76, -95.37, 7.1),
    (38.91, -77.04, 6.3),
    (25.76, -80.19, 6.1),
    (39.95, -75.17, 6.2),
    (33.75, -84.39, 6.1),
    (33.45, -112.07, 4.9),
    (42.36, -71.06, 4.9),
    (37.77, -122.42, 4.7),
    (33.98, -117.37, 4.6),
    (42.33, -83.05, 4.4),
    (47.61, -122.33, 4.0),
    (44.98, -93.27, 3.7),
    (32.72, -117.16, 3.3),
    (27.95, -82.46, 3.2),
    (39.74, -104.99, 3.0),
    (38.63, -90.20, 2.8),
];

/// The relative rate of hour `h`, with the day's mean at 1.
pub fn hour_factor(h: usize) -> f64 {
    let mean = DAY_SHAPE.iter().sum::<f64>() / 24.0;
    DAY_SHAPE[h % 24] / mean
}

/// Where a flight starts: near a metro (85%, weighted by population) or anywhere in the
/// contiguous US.
fn place(rng: &mut StdRng) -> (f64, f64) {
    if rng.random_bool(0.15) {
        return (rng.random_range(25.0..49.0), rng.random_range(-124.0..-67.0));
    }
    let total: f64 = METROS.iter().map(|m| m.2).sum();
    let mut pick = rng.random_range(0.0..total);
    let (lat, lng, _) = *METROS
        .iter()
        .find(|m| {
            pick -= m.2;
            pick <= 0.0
        })
        .unwrap_or(&METROS[0]);
    // About 30 km around the centre (a box; the shape of a metro matters little here).
    let spread = 0.3;
    (lat + rng.random_range(-spread..spread), lng + rng.random_range(-spread..spread) / lat.to_radians().cos())
}

/// A square of `side_m` around (lat, lng) at 0-120 m over [start, end].
fn square_at(lat: f64, lng: f64, side_m: f64, start: Timestamp, end: Timestamp) -> Volume4D {
    let dlat = side_m / 2.0 / 111_200.0;
    let dlng = side_m / 2.0 / (111_320.0 * lat.to_radians().cos());
    let p = |lat, lng| LatLngPoint { lat, lng };
    let v = Volume3D {
        outline_polygon: Some(Polygon {
            vertices: vec![
                p(lat - dlat, lng - dlng),
                p(lat - dlat, lng + dlng),
                p(lat + dlat, lng + dlng),
                p(lat + dlat, lng - dlng),
            ],
        }),
        outline_circle: None,
        altitude_lower: None,
        altitude_upper: None,
    };
    shapes::volume(v, 0.0, 120.0, start, end)
}

/// The connections flights share: per instance, tokens of the three roles; and the OVNs of
/// every live intent, which a real USS gets from each intent's manager (the DSS shows an
/// OVN to its owner only).
struct Conns {
    book: crate::workloads::OvnBook,
    strategic: Vec<GenClient>,
    rid_sp: Vec<GenClient>,
    rid_dp: Vec<GenClient>,
    next: AtomicUsize,
}

impl Conns {
    fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// What the flights of one slot did.
#[derive(Default)]
struct Slot {
    rec: Recorder,
    started: u64,
    shed: u64,
}

const WRITES: [&str; 9] =
    ["plan", "subscribe", "activate", "isa-create", "isa-update", "isa-delete", "end", "unsubscribe", "plan-retry"];
const READS: [&str; 3] = ["plan-query", "activate-query", "isa-search"];

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// The key of a write over `area`: the OVNs of the others' intents the DSS reports there,
/// from their managers (the book).
async fn key_for(
    c: &GenClient,
    book: &crate::workloads::OvnBook,
    area: &Volume4D,
    me: &str,
    rec: &mut Recorder,
    kind: &'static str,
) -> Option<Vec<String>> {
    let t = Instant::now();
    match c.query_intents(area).await {
        Ok(q) => {
            rec.ok(kind, micros(t));
            let known = book.read();
            Some(
                q.operational_intent_references
                    .into_iter()
                    .filter(|r| r.id != me)
                    .filter_map(|r| r.ovn.or_else(|| known.get(&r.id).cloned()))
                    .collect(),
            )
        }
        Err(e) => {
            rec.err(kind, e.status());
            None
        }
    }
}

/// Writes the intent (created when `ovn` is None), querying for its key first and again after
/// each 409; its new OVN and its subscription.
async fn write_intent(
    c: &GenClient,
    book: &crate::workloads::OvnBook,
    id: &str,
    ovn: Option<&str>,
    mut body: PutOperationalIntentReferenceParameters,
    rec: &mut Recorder,
    kinds: (&'static str, &'static str),
) -> Option<(String, Option<String>)> {
    let area = body.extents[0].clone();
    for attempt in 0..3 {
        body.key = Some(key_for(c, book, &area, id, rec, kinds.1).await?);
        let t = Instant::now();
        match c.put_intent(id, ovn, &body).await {
            Ok(r) => {
                rec.ok(if attempt == 0 { kinds.0 } else { "plan-retry" }, micros(t));
                let written = r.operational_intent_reference;
                let ovn = written.ovn?;
                book.write().insert(id.to_owned(), ovn.clone());
                return Some((ovn, Some(written.subscription_id).filter(|s| !s.is_empty())));
            }
            Err(ClientError::Conflict(_)) => rec.retry(),
            Err(e) => {
                rec.err(kinds.0, e.status());
                return None;
            }
        }
    }
    rec.err(kinds.0, 409);
    None
}

async fn timed(
    rec: &mut Recorder,
    kind: &'static str,
    c: &GenClient,
    method: Method,
    path: &str,
    body: Option<Bytes>,
) -> Option<Bytes> {
    let t = Instant::now();
    match c.raw(method, path, body).await {
        Ok((s, b)) if (200..300).contains(&s) => {
            rec.ok(kind, micros(t));
            Some(b)
        }
        Ok((s, _)) => {
            rec.err(kind, s);
            None
        }
        Err(e) => {
            rec.err(kind, e.status());
            None
        }
    }
}

/// The ISA's version in a change's answer.
fn isa_version(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["service_area"]["version"].as_str().map(str::to_owned)
}

/// One flight's whole life (see the module docs), its requests recorded in `rec`.
async fn fly(conns: Arc<Conns>, seed: u64, rec: &mut Recorder) {
    let mut rng = StdRng::seed_from_u64(seed);
    let i = conns.pick();
    let (c, sp, dp) = (
        &conns.strategic[i % conns.strategic.len()],
        &conns.rid_sp[i % conns.rid_sp.len()],
        &conns.rid_dp[i % conns.rid_dp.len()],
    );
    let step = LIFECYCLE / (ISA_UPDATES as u32 + 3);
    let (lat, lng) = place(&mut rng);
    let t0 = now().plus_seconds(60);
    let (t1, id) = (t0.plus_seconds(1800), uuid::Uuid::new_v4().to_string());
    let side = rng.random_range(400.0..3000.0);
    let area = square_at(lat, lng, side, t0, t1);
    let url = "http://127.0.0.1:9/uss";
    let body = PutOperationalIntentReferenceParameters {
        extents: vec![area.clone()],
        key: Some(vec![]),
        state: "Accepted".into(),
        uss_base_url: url.into(),
        subscription_id: None,
        // As USSs do (and Activated requires): a subscription made with the intent, through
        // which it hears of others' changes in its area.
        new_subscription: Some(api::ImplicitSubscriptionParameters {
            uss_base_url: url.into(),
            notify_for_constraints: None,
        }),
        requested_ovn_suffix: None,
    };
    let Some((ovn, implicit)) =
        write_intent(c, &conns.book, &id, None, body.clone(), rec, ("plan", "plan-query")).await
    else {
        return;
    };
    let sub = if seed.is_multiple_of(SUBSCRIBE_EVERY) {
        let sub_id = uuid::Uuid::new_v4().to_string();
        let params = PutSubscriptionParameters {
            extents: area.clone(),
            uss_base_url: url.into(),
            notify_for_operational_intents: Some(true),
            notify_for_constraints: Some(false),
        };
        let t = Instant::now();
        match c.put_subscription(&sub_id, None, &params).await {
            Ok(r) => {
                rec.ok("subscribe", micros(t));
                Some((sub_id, r.subscription.version))
            }
            Err(e) => {
                rec.err("subscribe", e.status());
                None
            }
        }
    } else {
        None
    };
    tokio::time::sleep(step).await;
    let activated = PutOperationalIntentReferenceParameters {
        state: "Activated".into(),
        subscription_id: implicit,
        new_subscription: None,
        ..body
    };
    let ovn = match write_intent(c, &conns.book, &id, Some(&ovn), activated, rec, ("activate", "activate-query")).await
    {
        Some((new, _)) => new,
        None => ovn,
    };

    // Remote ID: the ISA follows the flight; a display provider looks around it after each move.
    let isa = uuid::Uuid::new_v4().to_string();
    let isa_at = |lat: f64, lng: f64| {
        Bytes::from(
            serde_json::to_vec(&json!({"extents": square_at(lat, lng, 300.0, t0, t1), "uss_base_url": url}))
                .unwrap_or_default(),
        )
    };
    let path = format!("/rid/v2/dss/identification_service_areas/{isa}");
    let mut version = match timed(rec, "isa-create", sp, Method::PUT, &path, Some(isa_at(lat, lng))).await {
        Some(b) => isa_version(&b),
        None => None,
    };
    let (mut la, mut lo) = (lat, lng);
    for _ in 0..ISA_UPDATES {
        tokio::time::sleep(step).await;
        let Some(v) = version.clone() else { break };
        la += rng.random_range(-0.002..0.002);
        lo += rng.random_range(-0.002..0.002);
        version = timed(rec, "isa-update", sp, Method::PUT, &format!("{path}/{v}"), Some(isa_at(la, lo)))
            .await
            .and_then(|b| isa_version(&b));
        let d = 0.02;
        let search = format!(
            "/rid/v2/dss/identification_service_areas?area={:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}",
            la - d,
            lo - d,
            la - d,
            lo + d,
            la + d,
            lo + d,
            la + d,
            lo - d
        );
        timed(rec, "isa-search", dp, Method::GET, &search, None).await;
    }
    tokio::time::sleep(step).await;
    if let Some(v) = version {
        timed(rec, "isa-delete", sp, Method::DELETE, &format!("{path}/{v}"), None).await;
    }
    let t = Instant::now();
    match c.delete_intent(&id, &ovn).await {
        Ok(_) => {
            rec.ok("end", micros(t));
            conns.book.write().remove(&id);
        }
        Err(e) => rec.err("end", e.status()),
    }
    if let Some((sub_id, version)) = sub {
        timed(rec, "unsubscribe", c, Method::DELETE, &format!("/dss/v1/subscriptions/{sub_id}/{version}"), None).await;
    }
}

/// Flights launched by one slot, finishing in the background.
struct Launched {
    tasks: tokio::task::JoinSet<()>,
    merged: Arc<parking_lot::Mutex<Recorder>>,
    started: u64,
    shed: u64,
}

impl Launched {
    /// Waits for the slot's flights (bounded: every request has its own timeout).
    async fn finish(mut self) -> Slot {
        while self.tasks.join_next().await.is_some() {}
        let rec = std::mem::take(&mut *self.merged.lock());
        Slot { rec, started: self.started, shed: self.shed }
    }
}

/// Starts flights at `per_s` for `seconds` (returning when the last has started); each
/// flight's requests are recorded in its slot, whenever they happen.
async fn launch_slot(
    conns: &Arc<Conns>,
    per_s: f64,
    seconds: f64,
    seed: u64,
    in_flight: &Arc<AtomicUsize>,
) -> Launched {
    let started_at = Instant::now();
    let total = (per_s * seconds).round() as u64;
    let cap = (SHED_FACTOR * per_s * LIFECYCLE.as_secs_f64()).ceil() as usize + 100;
    let merged = Arc::new(parking_lot::Mutex::new(Recorder::default()));
    let shed = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        // Open loop: the n-th flight of the slot starts at n / rate, late or not.
        let due = started_at + Duration::from_secs_f64(n as f64 / per_s.max(1e-9));
        tokio::time::sleep_until(due.into()).await;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= cap {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            shed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (conns, merged, in_flight) = (conns.clone(), merged.clone(), in_flight.clone());
        tasks.spawn(async move {
            let mut rec = Recorder::default();
            fly(conns, seed.wrapping_mul(1_000_003).wrapping_add(n), &mut rec).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            merged.lock().merge(rec);
        });
    }
    // The slot lasts its whole time even when its last flight was due earlier.
    tokio::time::sleep_until((started_at + Duration::from_secs_f64(seconds)).into()).await;
    let shed = shed.load(Ordering::Relaxed);
    Launched { tasks, merged, started: total - shed, shed }
}

/// One line of the day or the ramp.
fn slot_line(label: &str, offered: f64, seconds: f64, slot: Slot) -> (serde_json::Value, bool, Recorder) {
    let writes = slot.rec.count(&WRITES) as f64 / seconds;
    let reads = slot.rec.count(&READS) as f64 / seconds;
    let errors: u64 = slot.rec.server_5xx;
    let requests = slot.rec.requests.max(1);
    let ops = slot.rec.clone().into_ops(seconds);
    let write_p99 = ops.iter().filter(|o| WRITES.contains(&o.kind.as_str())).map(|o| o.p99_ms).fold(0.0, f64::max);
    let failed = ops.iter().map(|o| o.errors).sum::<u64>();
    let saturated = slot.shed > 0 || write_p99 > 1000.0 || failed * 100 > requests;
    let line = json!({
        "slot": label, "offered_flights_per_s": offered, "flights_started": slot.started, "flights_shed": slot.shed,
        "writes_per_s": writes, "reads_per_s": reads, "write_p99_ms": write_p99, "failed_requests": failed,
        "server_errors": errors, "saturated": saturated,
    });
    (line, saturated, slot.rec)
}

/// The national day and the ramp (see the module docs). `scale` multiplies the US's rates
/// (0.2: a country a fifth the size); `slot_s` is the wall time of one simulated hour.
pub async fn national(ctx: &Ctx, scale: f64, slot_s: f64) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let server = ctx.fresh_pool_or_server("national", &[]).await?;
    let instances = 1 + server.others.len();
    let mut conns =
        Conns { book: Arc::default(), strategic: vec![], rid_sp: vec![], rid_dp: vec![], next: AtomicUsize::new(0) };
    for k in 0..instances * CONNECTIONS_PER_INSTANCE {
        let base = server.base_for(k);
        let uss = format!("uss{}", k % 40);
        conns.strategic.push(GenClient::new(base, &mint(&ctx.keys, &uss, &[crate::workloads::SC])?)?);
        conns.rid_sp.push(GenClient::new(base, &mint(&ctx.keys, &uss, &["rid.service_provider"])?)?);
        conns
            .rid_dp
            .push(GenClient::new(base, &mint(&ctx.keys, &format!("dp{}", k % 10), &["rid.display_provider"])?)?);
    }
    let conns = Arc::new(conns);

    // The rest of the live record: intents spread over the country, as a day's would be.
    let preload = cfg.city_intents;
    let t = Instant::now();
    let mut loaders = tokio::task::JoinSet::new();
    let workers = 32.min(conns.strategic.len());
    for w in 0..workers {
        let conns = conns.clone();
        let seed = cfg.seed * 31 + w as u64;
        loaders.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let c = &conns.strategic[w];
            let mut done = 0u64;
            for _ in 0..preload / workers {
                let (lat, lng) = place(&mut rng);
                let t0 = now().plus_seconds(rng.random_range(60..20 * 3600));
                let body = PutOperationalIntentReferenceParameters {
                    extents: vec![square_at(lat, lng, rng.random_range(400.0..3000.0), t0, t0.plus_seconds(1800))],
                    key: Some(vec![]),
                    state: "Accepted".into(),
                    uss_base_url: "http://127.0.0.1:9/uss".into(),
                    subscription_id: None,
                    new_subscription: None,
                    requested_ovn_suffix: None,
                };
                // An overlap (409: its key is incomplete) is skipped: the preload only fills
                // the record.
                let id = uuid::Uuid::new_v4().to_string();
                if let Ok(r) = c.put_intent(&id, None, &body).await {
                    conns.book.write().extend(r.operational_intent_reference.ovn.map(|ovn| (id, ovn)));
                    done += 1;
                }
            }
            done
        });
    }
    let mut preloaded = 0;
    while let Some(r) = loaders.join_next().await {
        preloaded += r.unwrap_or(0);
    }
    let preload_seconds = t.elapsed().as_secs_f64();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut day = Vec::new();
    let mut total = Recorder::default();
    let mut first_saturated_hour = None;
    // Hours follow each other without a pause (flights of one hour still fly in the next, as
    // in a real day); each hour's requests are counted in the hour its flights started.
    let mut launched = Vec::new();
    for h in 0..24 {
        let per_s = US_MEAN_FLIGHTS_PER_S * scale * hour_factor(h);
        launched.push((h, per_s, launch_slot(&conns, per_s, slot_s, cfg.seed + h as u64, &in_flight).await));
    }
    for (h, per_s, slot) in launched {
        let (line, saturated, rec) = slot_line(&format!("{h:02}:00"), per_s, slot_s, slot.finish().await);
        if saturated && first_saturated_hour.is_none() {
            first_saturated_hour = Some(h);
        }
        total.merge(rec);
        day.push(line);
    }
    let day_seconds = 24.0 * slot_s;

    // The peak hour, multiplied until it saturates.
    let peak = US_MEAN_FLIGHTS_PER_S * scale * (0..24).map(hour_factor).fold(0.0, f64::max);
    let mut ramp = Vec::new();
    let mut sustained = 0.0;
    // A smoke run (hours of under a second) tries the first steps only.
    let steps = if slot_s < 1.0 { 3 } else { RAMP.len() };
    for (i, m) in RAMP.iter().take(steps).enumerate() {
        let slot = launch_slot(&conns, peak * m, slot_s * 2.0, cfg.seed + 100 + i as u64, &in_flight).await;
        let (line, saturated, _) = slot_line(&format!("peak x{m}"), peak * m, slot_s * 2.0, slot.finish().await);
        ramp.push(line);
        if saturated {
            break;
        }
        sustained = *m;
    }

    let mut report = WorkloadReport {
        workload: "national".into(),
        parameters: json!({
            "scale": scale, "mean_new_flights_per_s": US_MEAN_FLIGHTS_PER_S * scale, "peak_over_mean": peak / (US_MEAN_FLIGHTS_PER_S * scale),
            "seconds_per_simulated_hour": slot_s, "flight_lifecycle_s": LIFECYCLE.as_secs_f64(),
            "per_flight": "query + create (+ subscription 1 in 5), query + activate, ISA create + 3 moves + 3 searches, ISA delete, intent delete",
            "writes_per_flight": 8.4, "reads_per_flight": 5, "instances": instances,
            "hours": day, "ramp": ramp,
        }),
        preload_count: preloaded,
        preload_seconds,
        ..Default::default()
    };
    report.notes.push(match first_saturated_hour {
        None => format!("the whole day at {scale}x the US's traffic was served without saturating"),
        Some(h) => format!("saturated at {h:02}:00 of the day at {scale}x the US's traffic"),
    });
    report.notes.push(format!(
        "the peak hour ({:.0} new flights/s at scale {scale}) was sustained at up to {sustained}x (of {:?}); \
         see parameters.ramp for each step's writes/s and p99",
        peak, RAMP
    ));
    Ok(crate::workloads::finish_with(report, total, day_seconds, &WRITES, &READS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_averages_the_mean_and_peaks_at_three_and_a_half_times_it() {
        let mean = (0..24).map(hour_factor).sum::<f64>() / 24.0;
        let peak = (0..24).map(hour_factor).fold(0.0, f64::max);
        assert!((mean - 1.0).abs() < 1e-9, "{mean}");
        assert!((peak - 3.5).abs() < 0.1, "peak/mean {peak}");
    }

    #[test]
    fn flights_start_in_the_contiguous_us() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..10_000 {
            let (lat, lng) = place(&mut rng);
            assert!((24.0..50.0).contains(&lat) && (-125.0..-66.0).contains(&lng), "{lat},{lng}");
        }
    }
}
