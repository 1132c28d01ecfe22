//! The store's area search at city size (100,000 intents of one or two volumes over
//! 50 km x 50 km x 24 h, as `deconflict bench --workload city` preloads), measured through the
//! public `Store` API: index candidates, row handles, exact tests.
//!
//! A search in the benchmark's server is ~10x dearer than the same search warm in a loop: the
//! server's other work (HTTP, JSON, the generator on the same cores) evicts the caches between
//! requests. So each figure is given twice: warm, and with a neighbour thread streaming through
//! 64 MiB on the other core (cache pressure like the server's), and the brute-force scan over
//! the same rows is measured in the same run for the ratio.
//!
//! `cargo bench -p store-embedded --bench search`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use geo4d::{AltitudeBand, Circle, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use store::{Match, Store, Txn, Write};

fn ll(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).expect("valid point")
}

const T0: i64 = 1_800_000_000;

fn volume(rng: &mut StdRng, fp: Footprint, t0: i64, t1: i64) -> Volume4D {
    let lo = rng.random_range(0.0..80.0);
    Volume4D {
        footprint: fp,
        altitude: AltitudeBand::new(Some(lo), Some(lo + rng.random_range(20.0..120.0))).expect("band"),
        time: TimeWindow::new(Some(Timestamp((T0 + t0) * 1_000_000)), Some(Timestamp((T0 + t1) * 1_000_000)))
            .expect("window"),
    }
}

fn footprint(rng: &mut StdRng, lat: f64, lng: f64) -> Footprint {
    if rng.random::<f64>() < 0.3 {
        return Footprint::Circle(Circle::new(ll(lat, lng), rng.random_range(50.0..300.0)).expect("circle"));
    }
    let n = 4 + (rng.random::<f64>() * 17.0) as usize;
    let vertices = (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            let r = rng.random_range(50.0..300.0);
            ll(lat + r * a.sin() / 111_200.0, lng + r * a.cos() / 75_900.0)
        })
        .collect();
    Footprint::Polygon(Polygon::new(vertices).expect("star polygon"))
}

fn city_extents(rng: &mut StdRng) -> Vec<Volume4D> {
    let (lat, lng) = (47.0045 + rng.random_range(0.0..0.441), 8.0066 + rng.random_range(0.0..0.645));
    let t0 = (rng.random::<f64>() * 23.0 * 3600.0) as i64;
    let t1 = t0 + 300 + (rng.random::<f64>() * 3300.0) as i64;
    let fp = footprint(rng, lat, lng);
    let mut out = vec![volume(rng, fp, t0, t1)];
    if rng.random::<f64>() < 0.5 {
        let (lat2, lng2) =
            (lat + rng.random_range(-400.0..400.0) / 111_200.0, lng + rng.random_range(-400.0..400.0) / 75_900.0);
        let fp2 = footprint(rng, lat2, lng2);
        let t2 = t1 + 300 + (rng.random::<f64>() * 1500.0) as i64;
        out.push(volume(rng, fp2, t1, t2));
    }
    out
}

fn query(rng: &mut StdRng) -> Vec<Volume4D> {
    let (lat, lng) = (47.0 + rng.random_range(0.0..0.44), 8.0 + rng.random_range(0.0..0.64));
    let sq =
        Polygon::new(vec![ll(lat, lng), ll(lat, lng + 0.0132), ll(lat + 0.009, lng + 0.0132), ll(lat + 0.009, lng)])
            .expect("square");
    let t0 = (rng.random::<f64>() * 23.0 * 3600.0) as i64;
    let mut v = volume(rng, Footprint::Polygon(sq), t0, t0 + 3600);
    v.altitude = AltitudeBand::new(Some(0.0), Some(400.0)).expect("band");
    vec![v]
}

/// Streams through 64 MiB until told to stop: the cache pressure of a busy neighbour.
fn polluter(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u64; 8 << 20];
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (i, v) in buf.iter_mut().enumerate().step_by(8) {
                *v = v.wrapping_add(i as u64 ^ x);
            }
            x += 1;
        }
        black_box(&buf);
    })
}

fn time_per_search(rt: &tokio::runtime::Runtime, store: &impl Store, queries: &[Vec<Volume4D>]) -> (f64, usize) {
    time_per_search_as(rt, store, queries, Match::Exact)
}

fn time_per_search_as(
    rt: &tokio::runtime::Runtime,
    store: &impl Store,
    queries: &[Vec<Volume4D>],
    how: Match,
) -> (f64, usize) {
    let start = Instant::now();
    let mut hits = 0;
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(2) {
        for q in queries {
            hits += rt.block_on(store.search_intents(black_box(q), how)).expect("search").len();
            n += 1;
        }
    }
    (start.elapsed().as_secs_f64() * 1e6 / n as f64, hits / n.max(1))
}

/// Microseconds per search warm, then with the neighbour streaming; and the hits per search.
fn warm_and_pressured(
    rt: &tokio::runtime::Runtime,
    store: &impl Store,
    queries: &[Vec<Volume4D>],
) -> (f64, f64, usize) {
    let (warm, hits) = time_per_search(rt, store, queries);
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = polluter(stop.clone());
    let (pressured, _) = time_per_search(rt, store, queries);
    stop.store(true, Ordering::Relaxed);
    neighbour.join().expect("polluter");
    (warm, pressured, hits)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("store");
    let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let intents: Vec<_> = (0..100_000).map(|_| store::conformance::intent(city_extents(&mut rng), None)).collect();
    let built = Instant::now();
    for chunk in intents.chunks(1000) {
        let writes = chunk.iter().cloned().map(Write::PutIntent).collect();
        rt.block_on(store.commit(Txn { preconditions: vec![], writes })).expect("commit");
    }
    println!("loaded 100,000 intents by inserts in {:.1} s", built.elapsed().as_secs_f64());
    let mut qrng = StdRng::seed_from_u64(42);
    let queries: Vec<_> = (0..4096).map(|_| query(&mut qrng)).collect();

    let (warm, pressured, hits) = warm_and_pressured(&rt, &store, &queries);

    let brute_start = Instant::now();
    let brute_queries = &queries[..64];
    let mut brute_hits = 0;
    for q in brute_queries {
        brute_hits += intents.iter().filter(|i| i.extents.iter().any(|v| q.iter().any(|a| v.intersects(a)))).count();
    }
    let brute = brute_start.elapsed().as_secs_f64() * 1e6 / brute_queries.len() as f64;
    let indexed_hits: usize =
        brute_queries.iter().map(|q| rt.block_on(store.search_intents(q, Match::Exact)).expect("search").len()).sum();
    assert_eq!(indexed_hits, brute_hits, "the index must return exactly what a full scan finds");
    println!("search at 100k intents (~{hits} hits per 1 km x 1 km x 1 h query), index built by inserts:");
    println!("  warm                 {warm:8.2} us/search");
    println!("  neighbour streaming  {pressured:8.2} us/search");
    println!("  brute-force scan     {brute:8.2} us/search   ({:.0}x the warm index)", brute / warm);
    // Discovery (the DSS's area queries) matches by relevance: hulls padded by 30 m each.
    let (relevant, relevant_hits) = time_per_search_as(&rt, &store, &queries, Match::Relevant { margin_m: 30.0 });
    println!(
        "  relevance (30 m)     {relevant:8.2} us/search   ({:.2}x exact, ~{relevant_hits} hits)",
        relevant / warm
    );

    // A restart recovers the same rows and bulk-loads the index in one go.
    store.shutdown();
    let (store, _) = store_embedded::EmbeddedStore::open(dir.path()).expect("reopen");
    let (warm, pressured, _) = warm_and_pressured(&rt, &store, &queries);
    println!("after a restart (index bulk-loaded):");
    println!("  warm                 {warm:8.2} us/search");
    println!("  neighbour streaming  {pressured:8.2} us/search");
}
