//! The workloads. Every planner behaves as a real one: it queries, builds its key from the OVNs it
//! knows (its own, and others' as their USSs would serve them: the shared OVN book stands in for
//! fetching details peer to peer), and after a 409 it queries again and retries.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use api::{PutOperationalIntentReferenceParameters, PutSubscriptionParameters, Volume4D};
use client::ClientError;
use geo4d::Timestamp;
use parking_lot::RwLock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::conn::GenClient;
use crate::shapes::{self, m_to_dlat, m_to_dlng, now, ORIGIN_LAT, ORIGIN_LNG};
use crate::stats::{Recorder, WorkloadReport};
use crate::{mint, Ctx};

pub(crate) const SC: &str = "utm.strategic_coordination";
/// Attempts per write before the generator gives up on it (counted as an error).
const MAX_TRIES: usize = 64;
const CITY_M: f64 = 50_000.0;
/// Distinct query boxes each city client cycles through.
const QUERY_BODIES_PER_CLIENT: usize = 2048;

/// OVNs known to every simulated USS: what peers would serve from their details endpoints.
pub(crate) type OvnBook = Arc<RwLock<HashMap<String, String>>>;

/// Stops a phase at its deadline or request budget, whichever comes first.
pub(crate) struct Budget {
    deadline: Instant,
    left: AtomicU64,
}

impl Budget {
    pub(crate) fn new(seconds: u64, requests: u64) -> Arc<Self> {
        Arc::new(Self { deadline: Instant::now() + Duration::from_secs(seconds), left: AtomicU64::new(requests) })
    }
    pub(crate) fn go(&self) -> bool {
        Instant::now() < self.deadline
            && self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_ok()
    }
}

/// Waits for every task of a phase and merges their recorders.
async fn merged(mut tasks: tokio::task::JoinSet<Recorder>) -> Result<Recorder> {
    let mut rec = Recorder::default();
    while let Some(r) = tasks.join_next().await {
        rec.merge(r?);
    }
    Ok(rec)
}

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

fn intent_body(
    extents: Vec<Volume4D>,
    state: &str,
    base_url: &str,
    implicit: bool,
) -> PutOperationalIntentReferenceParameters {
    PutOperationalIntentReferenceParameters {
        extents,
        key: Some(vec![]),
        state: state.into(),
        uss_base_url: base_url.into(),
        subscription_id: None,
        new_subscription: implicit.then(|| api::ImplicitSubscriptionParameters {
            uss_base_url: base_url.into(),
            notify_for_constraints: None,
        }),
        requested_ovn_suffix: None,
    }
}

/// How a write learns the OVNs of its key.
#[derive(Clone, Copy)]
enum Keying {
    /// As a planner does: query every volume of the plan first (one query each, recorded under
    /// this kind), and after a 409 query again and retry.
    QueryFirst(&'static str),
    /// Write at once with an empty key; after a 409, take the missing entities it lists and
    /// their OVNs from the book (what their USSs would serve). Used to fill a city fast, and
    /// by the subscriptions workload, which measures the write path alone.
    FromConflicts,
}

/// Creates or updates `id`; on 409 it completes its key and retries (see [`Keying`]).
/// Returns the new OVN and the response's subscriber ids.
#[allow(clippy::too_many_arguments)]
async fn plan_write(
    c: &GenClient,
    id: &str,
    ovn: Option<&str>,
    mut body: PutOperationalIntentReferenceParameters,
    book: &OvnBook,
    rec: &mut Recorder,
    kind: &'static str,
    keying: Keying,
) -> Option<(String, HashSet<String>)> {
    let mut key: Vec<String> = Vec::new();
    for _ in 0..MAX_TRIES {
        if let Keying::QueryFirst(query_kind) = keying {
            let mut seen = HashSet::new();
            key.clear();
            for area in &body.extents {
                let t = Instant::now();
                match c.query_intents(area).await {
                    Ok(q) => {
                        rec.ok(query_kind, micros(t));
                        let known = book.read();
                        for r in q.operational_intent_references {
                            if r.id != id && seen.insert(r.id.clone()) {
                                key.extend(r.ovn.or_else(|| known.get(&r.id).cloned()));
                            }
                        }
                    }
                    Err(e) => {
                        rec.err(query_kind, e.status());
                        return None;
                    }
                }
            }
        }
        body.key = Some(key.clone());
        let t = Instant::now();
        match c.put_intent(id, ovn, &body).await {
            Ok(r) => {
                rec.ok(kind, micros(t));
                let new = r.operational_intent_reference.ovn.unwrap_or_default();
                book.write().insert(id.to_owned(), new.clone());
                let subs = r
                    .subscribers
                    .iter()
                    .flat_map(|s| s.subscriptions.iter().map(|x| x.subscription_id.clone()))
                    .collect();
                return Some((new, subs));
            }
            Err(ClientError::Conflict(conflict)) => {
                rec.retry();
                if let Keying::FromConflicts = keying {
                    let known = book.read();
                    key.extend(conflict.missing_operational_intents.iter().filter_map(|m| known.get(&m.id).cloned()));
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                rec.err(kind, e.status());
                return None;
            }
        }
    }
    rec.err(kind, 409);
    None
}

async fn delete(c: &GenClient, id: &str, book: &OvnBook, rec: &mut Recorder) -> Option<HashSet<String>> {
    let ovn = book.read().get(id).cloned()?;
    let t = Instant::now();
    match c.delete_intent(id, &ovn).await {
        Ok(r) => {
            rec.ok("delete", micros(t));
            book.write().remove(id);
            Some(r.subscribers.iter().flat_map(|s| s.subscriptions.iter().map(|x| x.subscription_id.clone())).collect())
        }
        Err(e) => {
            if std::env::var_os("BENCH_DEBUG").is_some() {
                eprintln!("delete {id}: {e}");
            }
            rec.err("delete", e.status());
            None
        }
    }
}

fn client_for(ctx: &Ctx, base: &str, sub: &str) -> Result<GenClient> {
    GenClient::new(base, &mint(&ctx.keys, sub, &[SC])?)
}

/// CPU time of the server and of this generator over a measured window.
pub(crate) struct CpuMeter {
    server: f64,
    generator: f64,
}

impl CpuMeter {
    pub(crate) fn start(server: &crate::Server) -> Self {
        Self { server: server.cpu_seconds(), generator: crate::cpu_seconds_of("self") }
    }
    /// Microseconds of server and generator CPU per request since `start`.
    pub(crate) fn per_request(&self, server: &crate::Server, requests: u64) -> (f64, f64) {
        let per = |secs: f64| secs * 1e6 / requests.max(1) as f64;
        (per(server.cpu_seconds() - self.server), per(crate::cpu_seconds_of("self") - self.generator))
    }
}

fn finish(report: WorkloadReport, rec: Recorder, seconds: f64, write_kinds: &[&str]) -> WorkloadReport {
    finish_with(report, rec, seconds, write_kinds, &["query"])
}

/// [`finish`], with the op kinds that count as queries named.
pub(crate) fn finish_with(
    mut report: WorkloadReport,
    rec: Recorder,
    seconds: f64,
    write_kinds: &[&str],
    query_kinds: &[&str],
) -> WorkloadReport {
    report.measured_seconds = seconds;
    report.successful_writes_per_s = rec.count(write_kinds) as f64 / seconds;
    report.successful_queries_per_s = rec.count(query_kinds) as f64 / seconds;
    report.retries_409 = rec.retries_409;
    report.server_5xx_or_transport_errors = rec.server_5xx;
    report.ops = rec.into_ops(seconds);
    report
}

/// Busy area: every flight inside one 200 m square at 0-120 m; 60 s windows spread over 4500 s
/// so that about a third overlap in time with another live flight. Each flight is query,
/// create (with key), activate (with key), delete.
pub async fn busy_area(ctx: &Ctx, serial_baseline: bool) -> Result<WorkloadReport> {
    let server = if serial_baseline {
        ctx.fresh_server("busy-area-baseline", &["--commit-mode", "serial"])?
    } else {
        ctx.fresh_pool_or_server("busy-area", &[]).await?
    };
    busy_area_on(ctx, server, serial_baseline).await
}

/// busy-area against a pool with `delay` between its etcd members.
pub async fn busy_area_with(ctx: &Ctx, delay: Option<etcd_cluster::PeerDelay>) -> Result<WorkloadReport> {
    let server = ctx.fresh_pool_with("busy-area-delayed", &[], delay).await?;
    busy_area_on(ctx, server, false).await
}

async fn busy_area_on(ctx: &Ctx, server: crate::Server, serial_baseline: bool) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let book: OvnBook = Arc::default();
    let budget = Budget::new(cfg.duration_s, cfg.max_requests);
    let base_t = now().plus_seconds(300);
    let started = Instant::now();
    let cpu = CpuMeter::start(&server);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..cfg.concurrency {
        let c = client_for(ctx, server.base_for(p), &format!("planner{p}"))?;
        let (book, budget) = (book.clone(), budget.clone());
        let seed = cfg.seed + p as u64;
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rec = Recorder::default();
            let url = format!("http://127.0.0.1:9/planner{p}");
            while budget.go() {
                let start = base_t.plus_seconds(rng.random_range(0..4500));
                let end = start.plus_seconds(60);
                let (e, n) = (rng.random_range(40.0..160.0), rng.random_range(40.0..160.0));
                let fp =
                    shapes::footprint(&mut rng, ORIGIN_LAT + m_to_dlat(n), ORIGIN_LNG + m_to_dlng(e), 15.0, 40.0, 0.3);
                let extents = vec![shapes::volume(fp, 0.0, 120.0, start, end)];
                let id = uuid::Uuid::new_v4().to_string();
                let body = intent_body(extents.clone(), "Accepted", &url, true);
                let Some((ovn, _)) =
                    plan_write(&c, &id, None, body, &book, &mut rec, "create", Keying::QueryFirst("query")).await
                else {
                    continue;
                };
                let body = intent_body(extents, "Activated", &url, true);
                if plan_write(&c, &id, Some(&ovn), body, &book, &mut rec, "activate", Keying::QueryFirst("query"))
                    .await
                    .is_none()
                {
                    continue;
                }
                delete(&c, &id, &book, &mut rec).await;
            }
            rec
        });
    }
    let rec = merged(tasks).await?;
    let cpu = cpu.per_request(&server, rec.requests);
    let seconds = started.elapsed().as_secs_f64();
    let (peak, _) = server.rss_bytes();
    let report = WorkloadReport {
        workload: if serial_baseline { "busy-area (baseline: serial commits)".into() } else { "busy-area".into() },
        parameters: json!({"planners": cfg.concurrency, "square_m": 200, "altitude_m": [0, 120], "window_s": 60,
                           "start_spread_s": 4500, "implicit_subscriptions": true, "duration_s": cfg.duration_s}),
        server_peak_rss_mib: peak as f64 / 1048576.0,
        ..Default::default()
    };
    let report = WorkloadReport { server_cpu_us_per_request: cpu.0, generator_cpu_us_per_request: cpu.1, ..report };
    Ok(finish(report, rec, seconds, &["create", "activate", "delete"]))
}

/// One or two volumes somewhere in the 50 km city within the next 24 h.
fn city_extents(rng: &mut StdRng, base_t: Timestamp) -> Vec<Volume4D> {
    let (e, n) = (rng.random_range(500.0..CITY_M - 500.0), rng.random_range(500.0..CITY_M - 500.0));
    let (lat, lng) = (ORIGIN_LAT + m_to_dlat(n), ORIGIN_LNG + m_to_dlng(e));
    let start = base_t.plus_seconds(rng.random_range(0..23 * 3600));
    let end = start.plus_seconds(rng.random_range(300..3600));
    let lo = rng.random_range(0.0..80.0);
    let hi = lo + rng.random_range(20.0..120.0);
    let mut out = vec![shapes::volume(shapes::footprint(rng, lat, lng, 50.0, 300.0, 0.3), lo, hi, start, end)];
    if rng.random_bool(0.5) {
        let (lat2, lng2) =
            (lat + m_to_dlat(rng.random_range(-400.0..400.0)), lng + m_to_dlng(rng.random_range(-400.0..400.0)));
        let end2 = end.plus_seconds(rng.random_range(300..1800));
        out.push(shapes::volume(shapes::footprint(rng, lat2, lng2, 50.0, 300.0, 0.3), lo, hi, end, end2));
    }
    out
}

/// Creates `count` city intents through the API with `workers` connections; returns the ids
/// per simulated USS.
async fn preload_intents(
    ctx: &Ctx,
    base: &str,
    book: &OvnBook,
    count: usize,
    workers: usize,
) -> Result<Vec<Vec<String>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let base_t = now().plus_seconds(600);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let c = client_for(ctx, base, &format!("uss{}", w % 16))?;
        let (book, next) = (book.clone(), next.clone());
        let seed = ctx.config.seed * 1000 + w as u64;
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rec = Recorder::default();
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let id = uuid::Uuid::new_v4().to_string();
                let body = intent_body(city_extents(&mut rng, base_t), "Accepted", "http://127.0.0.1:9/uss", false);
                if plan_write(&c, &id, None, body, &book, &mut rec, "create", Keying::FromConflicts).await.is_some() {
                    ids.push(id);
                }
            }
            (w, ids)
        });
    }
    let mut per_uss: Vec<Vec<String>> = vec![Vec::new(); workers];
    while let Some(r) = tasks.join_next().await {
        let (w, ids) = r?;
        per_uss[w] = ids;
    }
    Ok(per_uss)
}

/// Checks that every intent the generator believes live is still served (sampled).
async fn lost_writes(ctx: &Ctx, base: &str, book: &OvnBook, sample: usize) -> Result<u64> {
    let c = client_for(ctx, base, "auditor")?;
    let ids: Vec<String> = book.read().keys().take(sample).cloned().collect();
    let mut lost = 0;
    for id in ids {
        if let Err(e) = c.get_intent(&id).await {
            if e.status() == 404 {
                lost += 1;
            }
        }
    }
    Ok(lost)
}

/// What the city's clients start from: the intents each owns, the OVNs, the query boxes.
struct CityStart {
    owned: Vec<Vec<String>>,
    book: OvnBook,
    query_bodies: Vec<Arc<Vec<bytes::Bytes>>>,
    base_t: geo4d::Timestamp,
    preload_seconds: f64,
    preloaded: u64,
}

/// Preloads the city and prepares each client's query boxes (before the clock starts: the
/// generator shares the cores with the server).
async fn city_start(ctx: &Ctx, server: &crate::Server) -> Result<CityStart> {
    let cfg = &ctx.config;
    let book: OvnBook = Arc::default();
    let t = Instant::now();
    let owned = preload_intents(ctx, &server.base, &book, cfg.city_intents, 32).await?;
    let preload_seconds = t.elapsed().as_secs_f64();
    let preloaded = book.read().len() as u64;
    let base_t = now().plus_seconds(600);
    // Each client cycles through its own random 1 km x 1 km x 1 h boxes.
    let query_bodies: Vec<Arc<Vec<bytes::Bytes>>> = (0..cfg.concurrency)
        .map(|k| {
            let mut rng = StdRng::seed_from_u64(cfg.seed * 104_729 + k as u64);
            let bodies = (0..QUERY_BODIES_PER_CLIENT)
                .map(|_| {
                    let (e, n) = (rng.random_range(0.0..CITY_M - 1000.0), rng.random_range(0.0..CITY_M - 1000.0));
                    let start = base_t.plus_seconds(rng.random_range(0..23 * 3600));
                    GenClient::query_body(&shapes::volume(
                        shapes::square(e, n, 1000.0),
                        0.0,
                        400.0,
                        start,
                        start.plus_seconds(3600),
                    ))
                })
                .collect();
            Arc::new(bodies)
        })
        .collect();
    Ok(CityStart { owned, book, query_bodies, base_t, preload_seconds, preloaded })
}

/// One completed request for the soak's windows: (ms since the start, latency µs, a write?).
type Sample = (u32, u32, bool);

/// Who does what among the city's clients.
#[derive(Clone, Copy)]
enum CityMix {
    /// Every client: 90% queries, 10% creates and deletes (the soak).
    Mixed,
    /// The first `n` clients only write (creates and deletes), the others only query: query
    /// rates then measure the read path, not how long a client waits on its writes.
    SeparateWriters(usize),
}

/// The writer clients of the city: one in eight (at least one), so writes stay about a tenth.
fn city_writers(concurrency: usize) -> usize {
    (concurrency / 8).max(1)
}

/// Starts the city's clients (see [`CityMix`]) until `budget` runs out;
/// with `samples`, each client also records every successful request's time and latency.
fn city_clients(
    ctx: &Ctx,
    server: &crate::Server,
    start: &mut CityStart,
    budget: &Arc<Budget>,
    samples: Option<(Instant, Arc<parking_lot::Mutex<Vec<Sample>>>)>,
    mix: CityMix,
) -> Result<tokio::task::JoinSet<Recorder>> {
    let cfg = &ctx.config;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..cfg.concurrency {
        let c = client_for(ctx, server.base_for(k), &format!("uss{}", k % 16))?;
        let n_owned = start.owned.len();
        let mut mine = std::mem::take(&mut start.owned[k % n_owned]);
        let (book, budget, bodies) = (start.book.clone(), budget.clone(), start.query_bodies[k].clone());
        let base_t = start.base_t;
        let samples = samples.clone();
        let seed = cfg.seed * 7919 + k as u64;
        // The share of this client's requests that are queries.
        let query_share = match mix {
            CityMix::Mixed => 0.9,
            CityMix::SeparateWriters(n) if k < n => 0.0,
            CityMix::SeparateWriters(_) => 1.0,
        };
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rec = Recorder::default();
            let mut mine_samples: Vec<Sample> = Vec::new();
            let mut next_query = 0usize;
            while budget.go() {
                let t = Instant::now();
                let write;
                if rng.random_bool(query_share) {
                    write = false;
                    let body = bodies[next_query % bodies.len()].clone();
                    next_query += 1;
                    match c.query_count(body).await {
                        Ok(_) => rec.ok("query", micros(t)),
                        Err(e) => {
                            rec.err("query", e.status());
                            continue;
                        }
                    }
                } else if !mine.is_empty() && rng.random_bool(0.5) {
                    write = true;
                    let id = mine.swap_remove(rng.random_range(0..mine.len()));
                    delete(&c, &id, &book, &mut rec).await;
                } else {
                    write = true;
                    let id = uuid::Uuid::new_v4().to_string();
                    let body = intent_body(city_extents(&mut rng, base_t), "Accepted", "http://127.0.0.1:9/uss", false);
                    if plan_write(&c, &id, None, body, &book, &mut rec, "create", Keying::QueryFirst("plan-query"))
                        .await
                        .is_some()
                    {
                        mine.push(id);
                    }
                }
                if let Some((t0, _)) = &samples {
                    let at = u32::try_from(t.duration_since(*t0).as_millis()).unwrap_or(u32::MAX);
                    mine_samples.push((at, u32::try_from(micros(t)).unwrap_or(u32::MAX), write));
                }
            }
            if let Some((_, all)) = samples {
                all.lock().extend(mine_samples);
            }
            rec
        });
    }
    Ok(tasks)
}

/// City: a preload of live intents over 50 km × 50 km × 24 h, then clients running 90% area
/// queries (1 km × 1 km × 1 h) and 10% creates and deletes.
pub async fn city(ctx: &Ctx) -> Result<WorkloadReport> {
    let server = ctx.fresh_pool_or_server("city", &[]).await?;
    city_on(ctx, server).await
}

/// The city against the embedded store, whatever `--store` says: the pool's baseline.
pub async fn city_embedded(ctx: &Ctx) -> Result<WorkloadReport> {
    let server = ctx.fresh_server("city-embedded", &[])?;
    let mut r = city_on(ctx, server).await?;
    r.workload = "city (embedded store, the pool's baseline)".into();
    Ok(r)
}

/// The city against a pool with `delay` between its etcd members.
pub async fn city_with(ctx: &Ctx, delay: Option<etcd_cluster::PeerDelay>) -> Result<WorkloadReport> {
    let server = ctx.fresh_pool_with("city-delayed", &[], delay).await?;
    city_on(ctx, server).await
}

async fn city_on(ctx: &Ctx, server: crate::Server) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let (_, rss_empty) = server.rss_bytes();
    let mut start = city_start(ctx, &server).await?;
    let (preload_seconds, preloaded, book) = (start.preload_seconds, start.preloaded, start.book.clone());
    let (_, rss_loaded) = server.rss_bytes();
    let budget = Budget::new(cfg.duration_s, cfg.max_requests);
    let started = Instant::now();
    let cpu = CpuMeter::start(&server);
    let writers = city_writers(cfg.concurrency);
    let tasks = city_clients(ctx, &server, &mut start, &budget, None, CityMix::SeparateWriters(writers))?;
    let rec = merged(tasks).await?;
    let cpu = cpu.per_request(&server, rec.requests);
    let seconds = started.elapsed().as_secs_f64();
    let (peak, _) = server.rss_bytes();
    let live = book.read().len() as u64;
    let lost = lost_writes(ctx, &server.base, &book, 2000).await?;
    let (floor, floor_cpu) = http_floor(ctx, &server, cfg.concurrency, cfg.duration_s.min(5)).await?;
    let mut report = WorkloadReport {
        workload: "city".into(),
        parameters: json!({"clients": cfg.concurrency, "area_km": [50, 50], "horizon_h": 24, "preload_intents": cfg.city_intents,
                           "volumes_per_intent": "1 or 2", "polygon_vertices": "4-20", "circle_share": 0.3,
                           "query_box": "1 km x 1 km x 1 h", "duration_s": cfg.duration_s,
                           "mix": format!("{} query-only clients; {writers} write-only clients (creates and deletes), their rate reported", cfg.concurrency.saturating_sub(writers)),
                           "creates": "query every volume first (plan-query, not counted as queries), re-query and retry after 409"}),
        preload_count: preloaded,
        preload_seconds,
        live_intents: live,
        lost_writes: lost,
        server_peak_rss_mib: peak as f64 / 1048576.0,
        rss_bytes_per_live_intent: rss_loaded.saturating_sub(rss_empty) as f64 / preloaded.max(1) as f64,
        ..Default::default()
    };
    let queries_per_s = rec.count(&["query"]) as f64 / seconds;
    report.notes.push(format!(
        "HTTP floor measured after the run: {floor:.0} authenticated GET /uss_availability per s on the same {} \
         connections ({floor_cpu:.1} us of server CPU each); city queries ran at {:.0}% of it",
        cfg.concurrency,
        100.0 * queries_per_s / floor.max(1.0)
    ));
    let report = WorkloadReport { server_cpu_us_per_request: cpu.0, generator_cpu_us_per_request: cpu.1, ..report };
    Ok(finish(report, rec, seconds, &["create", "delete"]))
}

/// Requests per second of the cheapest authenticated endpoint on `clients` connections for
/// `seconds`: the machine's HTTP + JWT + loopback floor in this run, against which the city's
/// figures can be read on any machine.
async fn http_floor(ctx: &Ctx, server: &crate::Server, clients: usize, seconds: u64) -> Result<(f64, f64)> {
    let base = &server.base;
    let budget = Budget::new(seconds.max(1), 1_000_000);
    let started = Instant::now();
    let cpu = CpuMeter::start(server);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let c = client_for(ctx, base, &format!("uss{}", k % 16))?;
        let budget = budget.clone();
        tasks.spawn(async move {
            let mut ok = 0u64;
            while budget.go() {
                if let Ok((200, _)) = c.raw(hyper::Method::GET, "/dss/v1/uss_availability/uss0", None).await {
                    ok += 1;
                }
            }
            ok
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        ok += r?;
    }
    let (server_cpu, _) = cpu.per_request(server, ok);
    Ok((ok as f64 / started.elapsed().as_secs_f64(), server_cpu))
}

/// Subscriptions: live subscriptions over the city, then creates and deletes whose subscriber
/// lists are checked against the generator's own oracle (relevance, exactly as the DSS defines it).
pub async fn subscriptions(ctx: &Ctx) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let server = ctx.fresh_server("subscriptions", &[])?;
    // Preload subscriptions: 1-4 km squares over the city, for the next 24 h.
    let subs: Arc<RwLock<Vec<(String, geo4d::Volume4D)>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32 {
        let c = client_for(ctx, &server.base, &format!("uss{}", w % 16))?;
        let (subs, next) = (subs.clone(), next.clone());
        let (count, seed) = (cfg.subscriptions, cfg.seed * 31 + w as u64);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let end = now().plus_seconds(24 * 3600);
            let mut errors = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let side = rng.random_range(1000.0..4000.0);
                let (e, n) = (rng.random_range(0.0..CITY_M - side), rng.random_range(0.0..CITY_M - side));
                let mut extents = shapes::volume(shapes::square(e, n, side), 0.0, 500.0, now(), end);
                extents.time_start = None;
                let id = uuid::Uuid::new_v4().to_string();
                let body = PutSubscriptionParameters {
                    extents: extents.clone(),
                    uss_base_url: format!("http://127.0.0.1:9/uss{}", w % 16),
                    notify_for_operational_intents: Some(true),
                    notify_for_constraints: None,
                };
                match c.put_subscription(&id, None, &body).await {
                    Ok(_) => subs.write().push((id, shapes::domain(&extents))),
                    Err(_) => errors += 1,
                }
            }
            errors
        });
    }
    let mut preload_errors = 0;
    while let Some(r) = tasks.join_next().await {
        preload_errors += r?;
    }
    let preload_seconds = t.elapsed().as_secs_f64();
    let subs = Arc::new(subs.read().clone());

    let book: OvnBook = Arc::default();
    let budget = Budget::new(cfg.duration_s, cfg.max_requests);
    let checked = Arc::new(AtomicU64::new(0));
    let mismatches = Arc::new(AtomicU64::new(0));
    let base_t = now().plus_seconds(600);
    let started = Instant::now();
    let cpu = CpuMeter::start(&server);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..cfg.concurrency {
        let c = client_for(ctx, &server.base, &format!("writer{k}"))?;
        let (book, budget, subs, checked, mismatches) =
            (book.clone(), budget.clone(), subs.clone(), checked.clone(), mismatches.clone());
        let seed = cfg.seed * 131 + k as u64;
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut rec = Recorder::default();
            let mut mine: Vec<(String, Vec<geo4d::Volume4D>)> = Vec::new();
            let mut n = 0u64;
            // Subscribers are chosen by relevance (padded convex hulls), as the DSS does.
            let expected = |vols: &[geo4d::Volume4D]| -> HashSet<String> {
                subs.iter()
                    .filter(|(_, v)| vols.iter().any(|x| x.relevant_to(v, crate::RELEVANCE_MARGIN_M)))
                    .map(|(id, _)| id.clone())
                    .collect()
            };
            while budget.go() {
                n += 1;
                let check = n.is_multiple_of(5);
                if mine.len() > 20 || (!mine.is_empty() && rng.random_bool(0.4)) {
                    let (id, vols) = mine.swap_remove(rng.random_range(0..mine.len()));
                    if let Some(got) = delete(&c, &id, &book, &mut rec).await {
                        if check {
                            checked.fetch_add(1, Ordering::Relaxed);
                            if got != expected(&vols) {
                                mismatches.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                } else {
                    let extents = city_extents(&mut rng, base_t);
                    let vols: Vec<geo4d::Volume4D> = extents.iter().map(shapes::domain).collect();
                    let id = uuid::Uuid::new_v4().to_string();
                    let body = intent_body(extents, "Accepted", "http://127.0.0.1:9/writer", false);
                    if let Some((_, got)) =
                        plan_write(&c, &id, None, body, &book, &mut rec, "create", Keying::FromConflicts).await
                    {
                        if check {
                            checked.fetch_add(1, Ordering::Relaxed);
                            if got != expected(&vols) {
                                mismatches.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        mine.push((id, vols));
                    }
                }
            }
            rec
        });
    }
    let rec = merged(tasks).await?;
    let cpu = cpu.per_request(&server, rec.requests);
    let seconds = started.elapsed().as_secs_f64();
    let (peak, _) = server.rss_bytes();
    let live = book.read().len() as u64;
    let lost = lost_writes(ctx, &server.base, &book, 2000).await?;
    let mut report = WorkloadReport {
        workload: "subscriptions".into(),
        parameters: json!({"subscriptions": cfg.subscriptions, "subscription_side_km": "1-4", "writers": cfg.concurrency,
                           "mix": "creates and deletes of city intents", "checked_share": 0.2, "duration_s": cfg.duration_s}),
        preload_count: subs.len() as u64,
        preload_seconds,
        live_intents: live,
        subscriber_lists_checked: checked.load(Ordering::Relaxed),
        subscriber_list_mismatches: mismatches.load(Ordering::Relaxed),
        lost_writes: lost,
        server_peak_rss_mib: peak as f64 / 1048576.0,
        ..Default::default()
    };
    if preload_errors > 0 {
        report.notes.push(format!("{preload_errors} subscription creates failed during preload"));
    }
    report.server_5xx_or_transport_errors += preload_errors;
    let report = WorkloadReport { server_cpu_us_per_request: cpu.0, generator_cpu_us_per_request: cpu.1, ..report };
    Ok(finish(report, rec, seconds, &["create", "delete"]))
}

/// Restart: writes intents straight into a data directory through the embedded store (as a
/// long-running DSS would have), then times a fresh DSS process until `/healthy` answers, and
/// measures its memory per live single-volume intent.
pub async fn restart(ctx: &Ctx) -> Result<WorkloadReport> {
    use store::{Store, Txn, Write};
    let cfg = &ctx.config;
    let dir = ctx.work_dir.join("restart");
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    {
        // One intent per commit, as the API writes them (one log record each), from many
        // concurrent writers so that group commit shares the syncs.
        let (s, _) = store_embedded::EmbeddedStore::open(&dir)?;
        let s = Arc::new(s);
        let writers = 64;
        let base_t = now().plus_seconds(600);
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..writers {
            let s = s.clone();
            let count = cfg.restart_intents / writers + usize::from(w < cfg.restart_intents % writers);
            let mut rng = StdRng::seed_from_u64(cfg.seed * 17 + w as u64);
            tasks.spawn(async move {
                for i in 0..count {
                    let mut extents = city_extents(&mut rng, base_t);
                    extents.truncate(1);
                    let oi = model::OperationalIntent {
                        id: uuid::Uuid::new_v4(),
                        manager: format!("uss{}", i % 16),
                        version: 1,
                        state: model::OperationalIntentState::Accepted,
                        ovn: model::Ovn::generate(),
                        extents: extents.iter().map(shapes::domain).collect(),
                        uss_base_url: format!("http://127.0.0.1:9/uss{}", i % 16),
                        subscription_id: None,
                    };
                    s.commit(Txn { preconditions: vec![], writes: vec![Write::PutIntent(oi)] }).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        match Arc::try_unwrap(s) {
            Ok(s) => s.shutdown(),
            Err(_) => anyhow::bail!("the preload's store is still shared after its writers ended"),
        }
    }
    let preload_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let server = crate::Server::start(&ctx.exe, &dir, &ctx.public_key_path, &[])?;
    let probe = GenClient::new(&server.base, "")?;
    while !probe.healthy().await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restart_seconds = t.elapsed().as_secs_f64();
    let (peak, rss) = server.rss_bytes();
    Ok(WorkloadReport {
        workload: "restart".into(),
        parameters: json!({"intents_on_disk": cfg.restart_intents, "volumes_per_intent": 1}),
        preload_count: cfg.restart_intents as u64,
        preload_seconds,
        live_intents: cfg.restart_intents as u64,
        restart_seconds,
        server_peak_rss_mib: peak as f64 / 1048576.0,
        rss_bytes_per_live_intent: rss as f64 / cfg.restart_intents.max(1) as f64,
        notes: vec![
            "preload written through the embedded store library (one intent per commit, one log record each, as \
             the API writes them), not over HTTP, to keep the run short"
                .into(),
        ],
        ..Default::default()
    })
}

/// Bytes of the store's files (log segments and snapshot) in `dir`, and the snapshot's
/// modification time (a new one means a compaction finished).
fn store_files(dir: &std::path::Path) -> (u64, Option<std::time::SystemTime>) {
    let mut bytes = 0;
    let mut snapshot = None;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("wal-") || name.starts_with("snapshot") {
            let m = e.metadata().ok();
            bytes += m.as_ref().map_or(0, |m| m.len());
            if name == "snapshot.bin" {
                snapshot = m.and_then(|m| m.modified().ok());
            }
        }
    }
    (bytes, snapshot)
}

fn p99_ms(mut v: Vec<u32>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    f64::from(v[(v.len() * 99 / 100).min(v.len() - 1)]) / 1000.0
}

/// Soak: the city mix for `soak_s` seconds on the embedded store, with the log compacted in
/// the background during the run (a low threshold makes it happen several times), reporting
/// throughput and p99 per 10-second window, the store's size and the RSS over time, so a stall
/// during compaction or unbounded growth shows as a figure.
pub async fn soak(ctx: &Ctx) -> Result<WorkloadReport> {
    const WINDOW_S: u64 = 10;
    let cfg = &ctx.config;
    let server = ctx.fresh_server("soak", &["--compact-max-log-mib", "16", "--compact-min-log-kib", "4096"])?;
    let mut start = city_start(ctx, &server).await?;
    let (preload_seconds, preloaded, book) = (start.preload_seconds, start.preloaded, start.book.clone());
    let budget = Budget::new(cfg.soak_s, u64::MAX);
    let t0 = Instant::now();
    let samples: Arc<parking_lot::Mutex<Vec<Sample>>> = Arc::default();
    let tasks = city_clients(ctx, &server, &mut start, &budget, Some((t0, samples.clone())), CityMix::Mixed)?;
    // Once a second: the store's size, the RSS, and whether a compaction finished.
    let mut marks: Vec<(u64, u64, u64, bool)> = Vec::new();
    let (_, mut last_snapshot) = store_files(&server.data_dir);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    while t0.elapsed() < Duration::from_secs(cfg.soak_s) {
        ticker.tick().await;
        let (bytes, snapshot) = store_files(&server.data_dir);
        let compacted = snapshot.is_some() && snapshot != last_snapshot;
        last_snapshot = snapshot;
        marks.push((t0.elapsed().as_secs(), bytes, server.rss_bytes().1, compacted));
    }
    let rec = merged(tasks).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock());
    let windows_n = cfg.soak_s.div_ceil(WINDOW_S).max(1);
    let mut windows = Vec::new();
    for w in 0..windows_n {
        let (from, to) = (w * WINDOW_S * 1000, ((w + 1) * WINDOW_S * 1000).min(cfg.soak_s * 1000));
        let span_s = ((to - from) as f64 / 1000.0).max(1e-3);
        let inside: Vec<&Sample> = samples.iter().filter(|s| (from..to).contains(&u64::from(s.0))).collect();
        let writes: Vec<u32> = inside.iter().filter(|s| s.2).map(|s| s.1).collect();
        let queries: Vec<u32> = inside.iter().filter(|s| !s.2).map(|s| s.1).collect();
        let in_window = marks.iter().filter(|m| m.0 * 1000 > from && m.0 * 1000 <= to);
        let last = in_window.clone().next_back().copied().or_else(|| marks.last().copied()).unwrap_or_default();
        windows.push(crate::stats::WindowReport {
            start_s: w * WINDOW_S,
            requests_per_s: inside.len() as f64 / span_s,
            writes_per_s: writes.len() as f64 / span_s,
            query_p99_ms: p99_ms(queries),
            write_p99_ms: p99_ms(writes),
            store_mib: last.1 as f64 / 1_048_576.0,
            rss_mib: last.2 as f64 / 1_048_576.0,
            compactions: in_window.filter(|m| m.3).count() as u32,
        });
    }
    let compactions: u32 = windows.iter().map(|w| w.compactions).sum();
    let lost = lost_writes(ctx, &server.base, &book, 2000).await?;
    let (peak, _) = server.rss_bytes();
    let mut report = WorkloadReport {
        workload: "soak".into(),
        parameters: json!({"clients": cfg.concurrency, "mix": "city: 90% query, 10% create/delete", "duration_s": cfg.soak_s,
                           "preload_intents": cfg.city_intents, "window_s": WINDOW_S,
                           "compaction": "--compact-max-log-mib 16 --compact-min-log-kib 4096"}),
        preload_count: preloaded,
        preload_seconds,
        live_intents: book.read().len() as u64,
        lost_writes: lost,
        server_peak_rss_mib: peak as f64 / 1_048_576.0,
        windows,
        ..Default::default()
    };
    let worst = report.windows.iter().map(|w| w.write_p99_ms).fold(0.0, f64::max);
    let best = report.windows.iter().map(|w| w.write_p99_ms).filter(|p| *p > 0.0).fold(f64::MAX, f64::min);
    report.notes.push(format!(
        "{compactions} compactions during the run; write p99 per window {:.2}-{:.2} ms (worst/best {:.1}x)",
        if best == f64::MAX { 0.0 } else { best },
        worst,
        if best == f64::MAX || best == 0.0 { 0.0 } else { worst / best }
    ));
    Ok(finish(report, rec, seconds, &["create", "delete"]))
}

/// Transactions of the pool's shape, per commit of busy-area on average.
pub const CEILING_COMPARES: usize = 10;
pub const CEILING_PUTS: usize = 9;

/// etcd alone, on a fresh cluster of the same members: the ceiling the pool's writes are
/// measured against in the same run ([`crate::ceiling`]).
pub async fn etcd_ceiling(ctx: &Ctx) -> Result<WorkloadReport> {
    etcd_ceiling_with(ctx, CEILING_COMPARES, CEILING_PUTS).await
}

/// [`etcd_ceiling`] with transactions of `compares` compares and `puts` puts.
pub async fn etcd_ceiling_with(ctx: &Ctx, compares: usize, puts: usize) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let dir = ctx.work_dir.join("etcd-ceiling");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cluster = etcd_cluster::LocalCluster::start(cfg.members.max(1), &dir).await.map_err(anyhow::Error::msg)?;
    let duration = Duration::from_secs(cfg.duration_s.max(1));
    let c = crate::ceiling::run(&cluster.client_urls, "/ceiling/", cfg.concurrency, duration, compares, puts)
        .await
        .map_err(anyhow::Error::msg)?;
    drop(cluster);
    let mut rec = Recorder::default();
    for l in &c.latencies_us {
        rec.ok("txn", *l);
    }
    let mut report = WorkloadReport {
        workload: "etcd alone (the pool's transaction shape)".into(),
        parameters: json!({"members": cfg.members, "clients": cfg.concurrency, "compares": compares,
                           "puts": puts, "watches": cfg.members, "duration_s": cfg.duration_s}),
        ..Default::default()
    };
    if c.retried > 0 {
        report.notes.push(format!(
            "{} transactions were refused or timed out by etcd (a leader change or a loaded machine) and sent again",
            c.retried
        ));
    }
    Ok(finish(report, rec, c.seconds, &["txn"]))
}
