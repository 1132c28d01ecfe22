//! The network Remote ID workload (`rid`, ASTM F3411-22a under `/rid/v2`): service providers
//! keep one ISA per flight (created when it starts, moved every few seconds as it flies, deleted
//! when it ends); display providers hold subscriptions over the areas they show and search ISAs
//! there. Two scales, each in three phases so that every figure is measured on its own and
//! together: writers only, searchers only, and half of each.
//!
//! - `busy area`: every flight inside one 1 km square, ten display providers each subscribed to
//!   the whole square, so every ISA write names exactly those ten subscriptions (checked: the
//!   subscriber list of every write is compared with that set).
//! - `city`: `rid_isas` live ISAs preloaded over 50 km x 50 km, one subscription per hundred ISAs
//!   (2 km squares, fifty display providers), searches of 1 km squares.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use api::{GetIsaResponse, IsaChangeResponse, PutRidSubscriptionResponse, SearchIsasResponse};
use bytes::Bytes;
use client::{decode_response, ClientError};
use geo4d::Timestamp;
use hyper::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::conn::GenClient;
use crate::shapes::{self, m_to_dlat, m_to_dlng, now, ORIGIN_LAT, ORIGIN_LNG};
use crate::stats::{Recorder, WorkloadReport};
use crate::{mint, Ctx};

const ISAS: &str = "/rid/v2/dss/identification_service_areas";
const SUBSCRIPTIONS: &str = "/rid/v2/dss/subscriptions";
const SP: &str = "rid.service_provider";
const DP: &str = "rid.display_provider";
/// Side of the busy area, metres.
const BUSY_M: f64 = 1000.0;
/// Display providers subscribed to the whole busy area (the DSS allows ten per manager in an
/// area; these are ten managers with one each).
const BUSY_SUBSCRIBERS: usize = 10;
const CITY_M: f64 = 50_000.0;
/// Side of an ISA around its flight, metres.
const ISA_SIDE_M: f64 = 200.0;
/// How far a flight moves between two updates of its ISA, metres.
const STEP_M: f64 = 30.0;
/// Updates of a busy-area flight's ISA before the flight ends.
const UPDATES_PER_FLIGHT: usize = 10;
/// Every ISA's window: from the phase's start for this long.
const ISA_WINDOW_S: i64 = 3600;
/// Distinct search areas each searcher cycles through.
const SEARCHES_PER_CLIENT: usize = 1024;

/// Where a run happens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    BusyArea,
    City,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::BusyArea => "rid busy-area",
            Scale::City => "rid city",
        }
    }
    fn side_m(self) -> f64 {
        match self {
            Scale::BusyArea => BUSY_M,
            Scale::City => CITY_M,
        }
    }
}

/// Which clients a phase runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Writes,
    Searches,
    Mixed,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Writes => "ISA writes only",
            Phase::Searches => "searches only",
            Phase::Mixed => "half writers, half searchers",
        }
    }
    /// Whether client `k` of `n` writes (else it searches).
    fn writes(self, k: usize, n: usize) -> bool {
        match self {
            Phase::Writes => true,
            Phase::Searches => false,
            Phase::Mixed => k < n.div_ceil(2),
        }
    }
}

/// One flight's ISA as its service provider knows it.
#[derive(Clone)]
struct Flight {
    id: String,
    version: String,
    east_m: f64,
    north_m: f64,
    heading: f64,
    /// The end of its ISA's window (kept by every update).
    end: Timestamp,
}

/// The state a scale's phases share: the flights each writer owns, the subscriptions of the
/// busy area (the oracle of its subscriber lists), the windows.
struct RidStart {
    owned: Vec<Vec<Flight>>,
    /// The display providers' subscriptions (in the busy area, each covers all of it).
    subscriptions: HashSet<String>,
    preload_seconds: f64,
    preloaded: u64,
}

/// The ISA of `f`; `start` only on a creation (an update keeps the ISA's start: the DSS
/// completes an omitted one, and a new ISA without one starts now).
fn isa_body(f: &Flight, start: Option<Timestamp>, url: &str) -> Bytes {
    let half = ISA_SIDE_M / 2.0;
    let mut v = shapes::volume(
        shapes::square(f.east_m - half, f.north_m - half, ISA_SIDE_M),
        0.0,
        120.0,
        start.unwrap_or(f.end),
        f.end,
    );
    if start.is_none() {
        v.time_start = None;
    }
    Bytes::from(serde_json::to_vec(&json!({"extents": v, "uss_base_url": url})).unwrap_or_default())
}

/// The subscriber ids a change names.
fn named(r: &IsaChangeResponse) -> HashSet<String> {
    r.subscribers.iter().flat_map(|s| s.subscriptions.iter().map(|x| x.subscription_id.clone())).collect()
}

fn micros(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

/// `lat,lng,...` of a square `side_m` wide with its south-west corner at (`east_m`, `north_m`).
fn polygon_string(east_m: f64, north_m: f64, side_m: f64) -> String {
    let (y0, x0) = (ORIGIN_LAT + m_to_dlat(north_m), ORIGIN_LNG + m_to_dlng(east_m));
    let (y1, x1) = (y0 + m_to_dlat(side_m), x0 + m_to_dlng(side_m));
    format!("{y0:.7},{x0:.7},{y0:.7},{x1:.7},{y1:.7},{x1:.7},{y1:.7},{x0:.7}")
}

fn time_text(t: Timestamp) -> String {
    api::time_to_wire(t).value
}

/// Writes `body` at `path`; the change's answer, or the status that refused it.
async fn put_isa(c: &GenClient, path: &str, body: Bytes) -> std::result::Result<IsaChangeResponse, ClientError> {
    let (status, bytes) = c.raw(Method::PUT, path, Some(body)).await?;
    decode_response(status, &bytes)
}

async fn delete_isa(c: &GenClient, f: &Flight) -> std::result::Result<IsaChangeResponse, ClientError> {
    let (status, bytes) = c.raw(Method::DELETE, &format!("{ISAS}/{}/{}", f.id, f.version), None).await?;
    decode_response(status, &bytes)
}

/// A service provider's client: creates, moves and ends flights' ISAs.
struct Writer {
    c: GenClient,
    url: String,
    scale: Scale,
    busy: Option<Arc<HashSet<String>>>,
    checked: u64,
    mismatches: u64,
}

impl Writer {
    /// Service provider `subject`'s client on instance `k` of `server`.
    fn new(
        ctx: &Ctx,
        server: &crate::Server,
        k: usize,
        subject: &str,
        scale: Scale,
        busy: Option<Arc<HashSet<String>>>,
    ) -> Result<Self> {
        Ok(Writer {
            c: GenClient::new(server.base_for(k), &mint(&ctx.keys, subject, &[SP])?)?,
            url: format!("http://127.0.0.1:9/{subject}"),
            scale,
            busy,
            checked: 0,
            mismatches: 0,
        })
    }

    fn check(&mut self, r: &IsaChangeResponse) {
        if let Some(expected) = &self.busy {
            self.checked += 1;
            if named(r) != **expected {
                self.mismatches += 1;
            }
        }
    }

    /// Starts a flight: in the busy area now, for an hour; in the city at any time of the next
    /// 23 hours, for 15 to 60 minutes (a day's flights, declared ahead).
    async fn create(&mut self, rng: &mut StdRng, rec: &mut Recorder) -> Option<Flight> {
        let (margin, side_m) = (ISA_SIDE_M, self.scale.side_m());
        let (start, end) = match self.scale {
            Scale::BusyArea => (None, now().plus_seconds(ISA_WINDOW_S)),
            Scale::City => {
                let start = now().plus_seconds(rng.random_range(0..23 * 3600));
                (Some(start), start.plus_seconds(rng.random_range(900..ISA_WINDOW_S)))
            }
        };
        let mut f = Flight {
            id: uuid::Uuid::new_v4().to_string(),
            version: String::new(),
            east_m: rng.random_range(margin..side_m - margin),
            north_m: rng.random_range(margin..side_m - margin),
            heading: rng.random_range(0.0..std::f64::consts::TAU),
            end,
        };
        let t = Instant::now();
        match put_isa(&self.c, &format!("{ISAS}/{}", f.id), isa_body(&f, start, &self.url)).await {
            Ok(r) => {
                rec.ok("isa-create", micros(t));
                self.check(&r);
                f.version = r.service_area.version;
                Some(f)
            }
            Err(e) => {
                rec.err("isa-create", e.status());
                None
            }
        }
    }

    /// Moves the flight one step (turning back at the area's edge) and writes its ISA.
    async fn update(&mut self, f: &mut Flight, rec: &mut Recorder) -> bool {
        let (margin, side_m) = (ISA_SIDE_M, self.scale.side_m());
        let (mut e, mut n) = (f.east_m + STEP_M * f.heading.cos(), f.north_m + STEP_M * f.heading.sin());
        if !(margin..side_m - margin).contains(&e) || !(margin..side_m - margin).contains(&n) {
            f.heading += std::f64::consts::PI;
            (e, n) = (f.east_m, f.north_m);
        }
        (f.east_m, f.north_m) = (e, n);
        let t = Instant::now();
        let path = format!("{ISAS}/{}/{}", f.id, f.version);
        match put_isa(&self.c, &path, isa_body(f, None, &self.url)).await {
            Ok(r) => {
                rec.ok("isa-update", micros(t));
                self.check(&r);
                f.version = r.service_area.version;
                true
            }
            Err(e) => {
                rec.err("isa-update", e.status());
                false
            }
        }
    }

    async fn delete(&mut self, f: &Flight, rec: &mut Recorder) -> bool {
        let t = Instant::now();
        match delete_isa(&self.c, f).await {
            Ok(r) => {
                rec.ok("isa-delete", micros(t));
                self.check(&r);
                true
            }
            Err(e) => {
                rec.err("isa-delete", e.status());
                false
            }
        }
    }
}

/// Creates the display providers' subscriptions: ten over the whole busy area, or one per
/// hundred ISAs over the city. Returns their ids.
async fn subscribe(ctx: &Ctx, server: &crate::Server, scale: Scale) -> Result<HashSet<String>> {
    let start = now();
    let count = match scale {
        Scale::BusyArea => BUSY_SUBSCRIBERS,
        Scale::City => (ctx.config.rid_isas / 100).max(1),
    };
    let mut rng = StdRng::seed_from_u64(ctx.config.seed * 31);
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    for k in 0..50 {
        clients.push(GenClient::new(server.base_for(k), &mint(&ctx.keys, &format!("dp{k}"), &[DP])?)?);
    }
    for i in 0..count {
        let area = match scale {
            Scale::BusyArea => shapes::square(-100.0, -100.0, BUSY_M + 200.0),
            Scale::City => {
                shapes::square(rng.random_range(0.0..CITY_M - 2000.0), rng.random_range(0.0..CITY_M - 2000.0), 2000.0)
            }
        };
        let body = json!({
            // The DSS's limit: 24 hours at most.
            "extents": shapes::volume(area, 0.0, 3000.0, start, start.plus_seconds(24 * 3600 - 60)),
            "uss_base_url": format!("http://127.0.0.1:9/dp{}", i % 50),
        });
        let id = uuid::Uuid::new_v4().to_string();
        let (status, bytes) = clients[i % clients.len()]
            .raw(Method::PUT, &format!("{SUBSCRIPTIONS}/{id}"), Some(Bytes::from(serde_json::to_vec(&body)?)))
            .await
            .map_err(|e| anyhow::anyhow!("subscribing: {e}"))?;
        let _: PutRidSubscriptionResponse =
            decode_response(status, &bytes).map_err(|e| anyhow::anyhow!("subscription {i} refused: {e}"))?;
        ids.insert(id);
    }
    Ok(ids)
}

/// Subscriptions, then (city) the preload of live ISAs, each owned by one writer client.
async fn rid_start(ctx: &Ctx, server: &crate::Server, scale: Scale) -> Result<RidStart> {
    let cfg = &ctx.config;
    let subscriptions = subscribe(ctx, server, scale).await?;
    let mut owned: Vec<Vec<Flight>> = vec![Vec::new(); cfg.concurrency.max(1)];
    let t = Instant::now();
    if scale == Scale::City {
        // Writer client k writes as `sp{k % 16}`; each preloading worker writes as one of the
        // subjects some writer client has, and its flights go to that client.
        let subjects = owned.len().min(16);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..32 {
            let mut writer = Writer::new(ctx, server, w, &format!("sp{}", w % subjects), scale, None)?;
            let (next, count) = (next.clone(), cfg.rid_isas);
            let seed = cfg.seed * 7 + w as u64;
            tasks.spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut rec = Recorder::default();
                let mut flights = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    if let Some(f) = writer.create(&mut rng, &mut rec).await {
                        flights.push(f);
                    }
                }
                (w % subjects, flights)
            });
        }
        let mut by_subject: Vec<Vec<Flight>> = vec![Vec::new(); subjects];
        while let Some(r) = tasks.join_next().await {
            let (subject, flights) = r?;
            by_subject[subject].extend(flights);
        }
        let clients = owned.len();
        for (subject, flights) in by_subject.into_iter().enumerate() {
            let writers: Vec<usize> = (0..clients).filter(|k| k % 16 == subject).collect();
            if writers.is_empty() {
                continue;
            }
            for (i, f) in flights.into_iter().enumerate() {
                owned[writers[i % writers.len()]].push(f);
            }
        }
    }
    let preloaded = owned.iter().map(Vec::len).sum::<usize>() as u64;
    anyhow::ensure!(
        scale == Scale::BusyArea || preloaded * 100 >= cfg.rid_isas as u64 * 99,
        "only {preloaded} of {} ISAs could be preloaded",
        cfg.rid_isas
    );
    Ok(RidStart { owned, subscriptions, preload_seconds: t.elapsed().as_secs_f64(), preloaded })
}

/// What writer client `k` did in a phase: its recorder, its flights, its checks of subscriber
/// lists.
type WriterDone = (usize, Recorder, Vec<Flight>, u64, u64);

/// Runs one phase on `server`: writers moving their flights (busy area: each flies one flight
/// at a time, ten updates, then ends it and starts another; city: 90% moves of one of its
/// flights, 5% ends, 5% starts), searchers cycling through their areas.
async fn phase(
    ctx: &Ctx,
    server: &crate::Server,
    scale: Scale,
    phase: Phase,
    start: &mut RidStart,
) -> Result<WorkloadReport> {
    let cfg = &ctx.config;
    let n = cfg.concurrency.max(1);
    let budget = crate::workloads::Budget::new(cfg.duration_s, cfg.max_requests);
    let busy = (scale == Scale::BusyArea).then(|| Arc::new(start.subscriptions.clone()));
    let origin = now();
    let started = Instant::now();
    let cpu = crate::workloads::CpuMeter::start(server);
    let mut writers = tokio::task::JoinSet::<Result<WriterDone>>::new();
    let mut searchers = tokio::task::JoinSet::<(Recorder, u64)>::new();
    for k in 0..n {
        let seed = cfg.seed * 7717 + k as u64 + 100 * phase as u64;
        let budget = budget.clone();
        if phase.writes(k, n) {
            let mut w = Writer::new(ctx, server, k, &format!("sp{}", k % 16), scale, busy.clone())?;
            let mut flights = std::mem::take(&mut start.owned[k]);
            writers.spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut rec = Recorder::default();
                let mut updates = 0usize;
                while budget.go() {
                    match scale {
                        Scale::BusyArea => {
                            if flights.is_empty() {
                                flights.extend(w.create(&mut rng, &mut rec).await);
                                updates = 0;
                            } else if updates < UPDATES_PER_FLIGHT {
                                updates += 1;
                                if !w.update(&mut flights[0], &mut rec).await {
                                    flights.clear();
                                }
                            } else {
                                let f = flights.remove(0);
                                w.delete(&f, &mut rec).await;
                            }
                        }
                        Scale::City => {
                            let roll = rng.random_range(0..100);
                            if flights.is_empty() || roll < 5 {
                                flights.extend(w.create(&mut rng, &mut rec).await);
                            } else if roll < 10 {
                                let f = flights.swap_remove(rng.random_range(0..flights.len()));
                                w.delete(&f, &mut rec).await;
                            } else {
                                let i = rng.random_range(0..flights.len());
                                if !w.update(&mut flights[i], &mut rec).await {
                                    flights.swap_remove(i);
                                }
                            }
                        }
                    }
                }
                Ok((k, rec, flights, w.checked, w.mismatches))
            });
        } else {
            let c = GenClient::new(server.base_for(k), &mint(&ctx.keys, &format!("dp{}", k % 50), &[DP])?)?;
            let mut rng = StdRng::seed_from_u64(seed);
            // The busy area's display: the whole square over the next half hour; the city's:
            // 1 km squares over a half hour somewhere in the day.
            let paths: Vec<String> = (0..SEARCHES_PER_CLIENT)
                .map(|_| {
                    let (e, n, from) = match scale {
                        Scale::BusyArea => (0.0, 0.0, origin),
                        Scale::City => (
                            rng.random_range(0.0..CITY_M - 1000.0),
                            rng.random_range(0.0..CITY_M - 1000.0),
                            origin.plus_seconds(rng.random_range(0..23 * 3600)),
                        ),
                    };
                    format!(
                        "{ISAS}?area={}&earliest_time={}&latest_time={}",
                        polygon_string(e, n, 1000.0),
                        time_text(from),
                        time_text(from.plus_seconds(ISA_WINDOW_S / 2))
                    )
                })
                .collect();
            searchers.spawn(async move {
                let mut rec = Recorder::default();
                let mut found = 0u64;
                let mut i = 0usize;
                while budget.go() {
                    let t = Instant::now();
                    let path = &paths[i % paths.len()];
                    i += 1;
                    match c.raw(Method::GET, path, None).await {
                        Ok((200, body)) => match serde_json::from_slice::<SearchIsasResponse>(&body) {
                            Ok(r) => {
                                rec.ok("search", micros(t));
                                found += r.service_areas.len() as u64;
                            }
                            Err(_) => rec.err("search", 0),
                        },
                        Ok((status, _)) => rec.err("search", status),
                        Err(e) => rec.err("search", e.status()),
                    }
                }
                (rec, found)
            });
        }
    }
    let mut rec = Recorder::default();
    let (mut checked, mut mismatches) = (0, 0);
    let mut live: Vec<Flight> = Vec::new();
    while let Some(r) = writers.join_next().await {
        let (k, r, flights, c, m) = r??;
        rec.merge(r);
        (checked, mismatches) = (checked + c, mismatches + m);
        live.extend(flights.iter().cloned());
        // The flights go back to their client (its subject owns them) for the next phase.
        start.owned[k] = flights;
    }
    let mut found = 0u64;
    while let Some(r) = searchers.join_next().await {
        let (r, n) = r?;
        rec.merge(r);
        found += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu.per_request(server, rec.requests);
    let lost = lost_isas(ctx, server, &live, 2000).await?;
    let (peak, _) = server.rss_bytes();
    let report = WorkloadReport {
        workload: format!("{} ({})", scale.name(), phase.name()),
        parameters: json!({
            "clients": n, "phase": phase.name(), "area_km": scale.side_m() / 1000.0,
            "isa_side_m": ISA_SIDE_M, "step_m": STEP_M, "isa_window_s": ISA_WINDOW_S,
            "subscriptions": start.subscriptions.len(),
            "preloaded_isas": start.preloaded, "search_area": "1 km x 1 km x 30 min",
            "isa_windows": if scale == Scale::BusyArea { "now for 1 h" } else { "15-60 min starting in the next 23 h" },
            "writers": if scale == Scale::BusyArea { "one flight each: create, 10 moves, delete" } else { "90% move, 5% end, 5% start" },
            "duration_s": cfg.duration_s,
        }),
        // The preload is shown with the first phase only.
        preload_count: if phase == Phase::Writes { start.preloaded } else { 0 },
        preload_seconds: if phase == Phase::Writes { start.preload_seconds } else { 0.0 },
        live_intents: live.len() as u64,
        lost_writes: lost,
        subscriber_lists_checked: checked,
        subscriber_list_mismatches: mismatches,
        server_peak_rss_mib: peak as f64 / 1_048_576.0,
        server_cpu_us_per_request: cpu.0,
        generator_cpu_us_per_request: cpu.1,
        ..Default::default()
    };
    let writes = ["isa-create", "isa-update", "isa-delete"];
    let mut report = crate::workloads::finish_with(report, rec, seconds, &writes, &["search"]);
    report.notes.push("live_intents counts the live ISAs the writers hold at the end".into());
    let searches = rec_searches(&report);
    if searches > 0 {
        report.notes.push(format!("a search found {:.1} ISAs on average", found as f64 / searches as f64));
    }
    Ok(report)
}

/// ISAs the writers believe live that the DSS no longer serves at their last acknowledged
/// version (sampled): acknowledged writes lost.
async fn lost_isas(ctx: &Ctx, server: &crate::Server, live: &[Flight], sample: usize) -> Result<u64> {
    let c = GenClient::new(&server.base, &mint(&ctx.keys, "auditor", &[DP])?)?;
    let mut lost = 0;
    for f in live.iter().take(sample) {
        let (status, bytes) = c.raw(Method::GET, &format!("{ISAS}/{}", f.id), None).await.context("auditing")?;
        match decode_response::<GetIsaResponse>(status, &bytes) {
            Ok(r) if r.service_area.version == f.version => {}
            Ok(_) => lost += 1,
            Err(e) if e.status() == 404 => lost += 1,
            Err(e) => anyhow::bail!("auditing ISA {}: {e}", f.id),
        }
    }
    Ok(lost)
}

/// What the pool's instances have counted so far, summed over every instance's `/metrics`:
/// commits and their compares and operations (the transactions' shape), and the time spent in
/// etcd transactions, waiting for the own watch and waiting for each reader's confirmation.
#[derive(Clone, Copy, Default)]
pub struct PoolCounts {
    commits: f64,
    compares: f64,
    ops: f64,
    txn_s: (f64, f64),
    apply_s: (f64, f64),
    reader_s: (f64, f64),
}

impl PoolCounts {
    /// Per commit since `before`: (compares, operations), rounded.
    fn shape_since(&self, before: &PoolCounts) -> (usize, usize) {
        let commits = (self.commits - before.commits).max(1.0);
        (
            ((self.compares - before.compares) / commits).round() as usize,
            ((self.ops - before.ops) / commits).round() as usize,
        )
    }
    /// Where a write's time went since `before`, as a sentence.
    fn times_since(&self, before: &PoolCounts) -> String {
        let mean = |now: (f64, f64), then: (f64, f64)| 1000.0 * (now.0 - then.0) / (now.1 - then.1).max(1.0);
        format!(
            "per commit on average: {:.1} ms in the etcd transaction, then {:.1} ms until this instance's watch applied it \
             and {:.1} ms until each other instance confirmed it (the two waits overlap)",
            mean(self.txn_s, before.txn_s),
            mean(self.apply_s, before.apply_s),
            mean(self.reader_s, before.reader_s)
        )
    }
}

/// [`PoolCounts`] now, or `None` when the server is not a pool.
pub async fn pool_counts(server: &crate::Server) -> Result<Option<PoolCounts>> {
    let mut total = PoolCounts::default();
    for k in 0..server.instances() {
        let c = GenClient::new(server.base_for(k), "none")?;
        let (status, bytes) = c.raw(Method::GET, "/metrics", None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(status == 200, "GET /metrics answered {status}");
        let text = String::from_utf8_lossy(&bytes);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let timing = |name: &str| (value(&format!("{name}_sum")), value(&format!("{name}_count")));
        let add = |a: (f64, f64), b: (f64, f64)| (a.0 + b.0, a.1 + b.1);
        total.commits += value("dss_etcd_commits_total");
        total.compares += value("dss_etcd_commit_compares_total");
        total.ops += value("dss_etcd_commit_ops_total");
        total.txn_s = add(total.txn_s, timing("dss_etcd_commit_seconds"));
        total.apply_s = add(total.apply_s, timing("dss_etcd_apply_wait_seconds"));
        total.reader_s = add(total.reader_s, timing("dss_etcd_reader_wait_seconds"));
    }
    Ok((total.commits > 0.0).then_some(total))
}

fn rec_searches(report: &WorkloadReport) -> u64 {
    report.ops.iter().filter(|o| o.kind == "search").map(|o| o.ok).sum()
}

/// Runs both scales' phases (with a pool under `--store etcd`); returns the reports.
///
/// The baseline measured in the same run: single node, the busy area's writes against the
/// naive design (`--commit-mode serial`: one commit at a time); with a pool, etcd alone
/// sending transactions of the shape the pool's busy-area writes sent (read from the
/// instances' `/metrics`), on a fresh cluster once the pool is stopped.
pub async fn rid(ctx: &Ctx) -> Result<Vec<WorkloadReport>> {
    let pool = ctx.config.store == "etcd";
    let mut reports = Vec::new();
    let mut baseline = None;
    if !pool {
        let server = ctx.fresh_server("rid-baseline", &["--commit-mode", "serial"])?;
        let mut start = rid_start(ctx, &server, Scale::BusyArea).await?;
        let mut r = phase(ctx, &server, Scale::BusyArea, Phase::Writes, &mut start).await?;
        r.workload = "rid busy-area (baseline: serial commits, ISA writes only)".into();
        r.print();
        baseline = Some(r.successful_writes_per_s);
        reports.push(r);
    }
    for scale in [Scale::BusyArea, Scale::City] {
        let name = if scale == Scale::BusyArea { "rid-busy-area" } else { "rid-city" };
        let server = ctx.fresh_pool_or_server(name, &[]).await?;
        let mut start = rid_start(ctx, &server, scale).await?;
        let before = pool_counts(&server).await?;
        let mut shape = None;
        let mut mine = Vec::new();
        for p in [Phase::Writes, Phase::Searches, Phase::Mixed] {
            let mut r = phase(ctx, &server, scale, p, &mut start).await?;
            if p == Phase::Writes && scale == Scale::BusyArea {
                if let (Some(b), Some(a)) = (before, pool_counts(&server).await?) {
                    shape = Some(a.shape_since(&b));
                    r.notes.push(a.times_since(&b));
                }
                if let Some(base) = baseline {
                    r.baseline_writes_per_s = base;
                    r.notes.push(format!(
                        "{:.1}x the ISA writes/s of the serial baseline measured in this run ({base:.0}/s)",
                        r.successful_writes_per_s / base.max(1e-9)
                    ));
                }
            }
            if pool {
                r.workload = format!("{} (pool)", r.workload);
            }
            r.print();
            mine.push(r);
        }
        drop(server);
        if let Some((compares, ops)) = shape {
            let ceiling = crate::workloads::etcd_ceiling_with(ctx, compares, ops).await?;
            ceiling.print();
            let writes = &mut mine[0];
            writes.baseline_writes_per_s = ceiling.successful_writes_per_s;
            writes.notes.push(format!(
                "{:.0}% of the transactions/s of etcd alone in this run ({:.0}/s of {compares} compares and {ops} operations, \
                 the shape these writes sent on average, {} clients, no DSS)",
                100.0 * writes.successful_writes_per_s / ceiling.successful_writes_per_s.max(1e-9),
                ceiling.successful_writes_per_s,
                ctx.config.concurrency
            ));
            println!("note ({}): {}", writes.workload, writes.notes.last().map_or("", String::as_str));
            mine.push(ceiling);
        }
        reports.extend(mine);
    }
    Ok(reports)
}
