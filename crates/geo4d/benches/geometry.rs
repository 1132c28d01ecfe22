//! Micro-benchmarks of the exact geometry and of index-backed candidate search, with the ratio
//! of the index against a brute-force scan measured in the same run.
//!
//! `cargo bench -p geo4d`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use geo4d::{AltitudeBand, Circle, Footprint, LatLng, Polygon, TimeWindow, Timestamp, Volume4D};
use rstar::{RStarInsertionStrategy, RTree, RTreeObject, RTreeParams, AABB};

/// Deterministic pseudo-random numbers (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next()
    }
}

fn ll(lat: f64, lng: f64) -> LatLng {
    LatLng::new(lat, lng).expect("valid point")
}

fn star(rng: &mut Rng, lat: f64, lng: f64, n: usize, r_m: f64) -> Footprint {
    let vertices = (0..n)
        .map(|i| {
            let a = std::f64::consts::TAU * i as f64 / n as f64;
            let r = r_m * rng.range(0.6, 1.0);
            ll(lat + r * a.sin() / 111_200.0, lng + r * a.cos() / 75_900.0)
        })
        .collect();
    Footprint::Polygon(Polygon::new(vertices).expect("star polygon"))
}

fn volume(rng: &mut Rng, fp: Footprint, t0: i64, t1: i64) -> Volume4D {
    let lo = rng.range(0.0, 80.0);
    Volume4D {
        footprint: fp,
        altitude: AltitudeBand::new(Some(lo), Some(lo + rng.range(20.0, 120.0))).expect("band"),
        time: TimeWindow::new(Some(Timestamp(t0 * 1_000_000)), Some(Timestamp(t1 * 1_000_000))).expect("window"),
    }
}

/// 100k volumes over 50 km × 50 km × 24 h, like the city benchmark.
fn city(n: usize) -> Vec<Volume4D> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    (0..n)
        .map(|_| {
            let (lat, lng) = (47.0 + rng.range(0.0, 0.45), 8.0 + rng.range(0.0, 0.65));
            let fp = if rng.next() < 0.3 {
                Footprint::Circle(Circle::new(ll(lat, lng), rng.range(50.0, 300.0)).expect("circle"))
            } else {
                let n = 4 + (rng.next() * 16.0) as usize;
                let r = rng.range(50.0, 300.0);
                star(&mut rng, lat, lng, n, r)
            };
            let t0 = (rng.next() * 23.0 * 3600.0) as i64;
            let t1 = t0 + 300 + (rng.next() * 3300.0) as i64;
            volume(&mut rng, fp, t0, t1)
        })
        .collect()
}

struct Entry {
    envelope: AABB<[f64; 4]>,
    idx: usize,
}
impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 4]>;
    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}
/// The node sizes of the embedded store's index (built by inserts, as a live store's is).
struct IndexParams;
impl RTreeParams for IndexParams {
    const MIN_SIZE: usize = 6;
    const MAX_SIZE: usize = 16;
    const REINSERTION_COUNT: usize = 4;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

fn build_index(all: &[Volume4D]) -> RTree<Entry, IndexParams> {
    let mut tree = RTree::new_with_params();
    for (idx, v) in all.iter().enumerate() {
        tree.insert(Entry { envelope: aabb(v), idx });
    }
    tree
}

/// The same axis scaling as the embedded store's index.
fn aabb(v: &Volume4D) -> AABB<[f64; 4]> {
    // The benchmark's shapes are all far from the antimeridian: one envelope each.
    let e = v.envelopes().next().expect("an envelope");
    let s = [1.0e5, 1.0e5, 1.0, 1.0];
    AABB::from_corners(std::array::from_fn(|i| e.min[i] * s[i]), std::array::from_fn(|i| e.max[i] * s[i]))
}

fn queries(n: usize) -> Vec<Volume4D> {
    let mut rng = Rng(42);
    (0..n)
        .map(|_| {
            let (lat, lng) = (47.0 + rng.range(0.0, 0.44), 8.0 + rng.range(0.0, 0.64));
            let sq = Polygon::new(vec![
                ll(lat, lng),
                ll(lat, lng + 0.0132),
                ll(lat + 0.009, lng + 0.0132),
                ll(lat + 0.009, lng),
            ])
            .expect("square");
            let t0 = (rng.next() * 23.0 * 3600.0) as i64;
            volume(&mut rng, Footprint::Polygon(sq), t0, t0 + 3600)
        })
        .collect()
}

fn indexed_search(tree: &RTree<Entry, IndexParams>, all: &[Volume4D], q: &Volume4D) -> usize {
    tree.locate_in_envelope_intersecting(&aabb(q)).filter(|e| all[e.idx].intersects(q)).count()
}

fn brute_force(all: &[Volume4D], q: &Volume4D) -> usize {
    all.iter().filter(|v| v.intersects(q)).count()
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(7);
    let fa = star(&mut rng, 47.0, 8.0, 12, 300.0);
    let a = volume(&mut rng, fa, 0, 3600);
    let fb = star(&mut rng, 47.001, 8.002, 12, 300.0);
    let b = volume(&mut rng, fb, 0, 3600);
    let circle = volume(&mut rng, Footprint::Circle(Circle::new(ll(47.0005, 8.001), 150.0).expect("c")), 0, 3600);
    // The same shapes inside one 0.5° tile: compared in the tile's cached plane.
    let (fta, ftb) = (star(&mut rng, 47.2, 8.2, 12, 300.0), star(&mut rng, 47.201, 8.202, 12, 300.0));
    let ta = volume(&mut rng, fta, 0, 3600);
    let tb = volume(&mut rng, ftb, 0, 3600);
    let tc = volume(&mut rng, Footprint::Circle(Circle::new(ll(47.2005, 8.201), 150.0).expect("c")), 0, 3600);
    let ff = star(&mut rng, 47.3, 8.3, 12, 300.0);
    let far = volume(&mut rng, ff, 0, 3600);
    let mut g = c.benchmark_group("exact");
    g.bench_function("polygon12_polygon12_overlapping", |x| x.iter(|| black_box(&a).intersects(black_box(&b))));
    g.bench_function("circle_polygon12", |x| x.iter(|| black_box(&circle).intersects(black_box(&a))));
    g.bench_function("polygon12_polygon12_same_tile", |x| x.iter(|| black_box(&ta).intersects(black_box(&tb))));
    g.bench_function("circle_polygon12_same_tile", |x| x.iter(|| black_box(&tc).intersects(black_box(&ta))));
    g.bench_function("disjoint_by_bounding_box", |x| x.iter(|| black_box(&far).intersects(black_box(&a))));
    g.bench_function("validate_polygon12", |x| {
        let vs: Vec<LatLng> = match &a.footprint {
            Footprint::Polygon(p) => p.vertices().to_vec(),
            Footprint::Circle(_) => unreachable!(),
        };
        x.iter(|| Polygon::new(black_box(vs.clone())))
    });
    g.finish();

    let all = city(100_000);
    let tree = build_index(&all);
    let qs = queries(64);
    let mut g = c.benchmark_group("search_100k");
    g.bench_function("rtree_plus_exact", |x| {
        let mut i = 0;
        x.iter(|| {
            i = (i + 1) % qs.len();
            indexed_search(&tree, &all, &qs[i])
        })
    });
    g.sample_size(10);
    g.bench_function("brute_force_exact_scan", |x| {
        let mut i = 0;
        x.iter(|| {
            i = (i + 1) % qs.len();
            brute_force(&all, &qs[i])
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    // The ratio, measured here in the same run on the same queries; results must agree.
    let all = city(100_000);
    let tree = build_index(&all);
    let qs = queries(64);
    let t = Instant::now();
    let indexed: Vec<usize> = (0..20).flat_map(|_| qs.iter().map(|q| indexed_search(&tree, &all, q))).collect();
    let t_index = t.elapsed().as_secs_f64() / indexed.len() as f64;
    let t = Instant::now();
    let brute: Vec<usize> = qs.iter().map(|q| brute_force(&all, q)).collect();
    let t_brute = t.elapsed().as_secs_f64() / brute.len() as f64;
    assert_eq!(&indexed[..qs.len()], &brute[..], "index and brute force disagree");
    println!(
        "search over 100k volumes: index+exact {:.1} µs/query, brute-force scan {:.1} µs/query, ratio {:.0}x (mean {:.1} hits/query)",
        t_index * 1e6,
        t_brute * 1e6,
        t_brute / t_index,
        brute.iter().sum::<usize>() as f64 / brute.len() as f64
    );
    hostile_shapes(&all, &tree);
    Criterion::default().configure_from_args().final_summary();
}

/// The worst case per family of hostile footprints (the second hardening pass): validation,
/// index envelopes, a prepared area, an exact test against a small circle, and a search over the
/// 100k-volume city, each shape timed on its own; the figure printed is the slowest of the
/// family. Every step must stay bounded by the vertex count, not by length, thinness or
/// latitude.
fn hostile_shapes(all: &[Volume4D], tree: &RTree<Entry, IndexParams>) {
    let mut rng = Rng(0x5eed_cafe);
    // 1e-7° wide at the end nearer the equator (about a centimetre; at 88° it would be under
    // the millimetre within which an outline touches itself, and refused).
    let meridian = |lat0: f64, lat1: f64, lng: f64| vec![ll(lat0, lng), ll(lat1, lng), ll(lat0, lng + 1e-7)];
    let families: Vec<(&str, Vec<Vec<LatLng>>)> = vec![
        (
            "meridian slivers (-29..88, 10..70, through the city)",
            vec![
                meridian(-29.0, 88.0, 8.0),
                meridian(10.0, 70.0, 8.0),
                meridian(47.0, 48.0, 8.5),
                meridian(-70.0, 10.0, -120.0),
            ],
        ),
        (
            "parallel slivers (along a latitude)",
            vec![
                vec![ll(47.5, -30.0), ll(47.5, 30.0), ll(47.50001, 30.0)],
                vec![ll(85.0, 0.0), ll(85.0, 90.0), ll(85.0001, 90.0)],
            ],
        ),
        (
            "diagonal slivers",
            vec![
                vec![ll(40.0, 0.0), ll(55.0, 20.0), ll(55.00001, 20.0)],
                vec![ll(-40.0, 170.0), ll(-30.0, -170.0), ll(-30.00001, -170.0)],
            ],
        ),
        (
            "1000-vertex stars",
            (0..4)
                .map(|k| {
                    (0..1000)
                        .map(|i| {
                            let a = std::f64::consts::TAU * i as f64 / 1000.0;
                            let r = 20_000.0 * rng.range(0.3, 1.0);
                            ll(47.5 + k as f64 + r * a.sin() / 111_200.0, 8.5 + r * a.cos() / 75_900.0)
                        })
                        .collect()
                })
                .collect(),
        ),
    ];
    let band = AltitudeBand::new(Some(0.0), Some(120.0)).expect("band");
    let window = TimeWindow::new(Some(Timestamp(0)), Some(Timestamp(3_600_000_000))).expect("window");
    let probe = Volume4D {
        footprint: Footprint::Circle(Circle::new(ll(47.5, 8.5), 100.0).expect("circle")),
        altitude: band,
        time: window,
    };
    for (name, shapes) in families {
        let mut worst = [0.0f64; 4];
        for vertices in shapes {
            let t = Instant::now();
            let first = vertices.first().copied();
            let polygon = Polygon::new(vertices)
                .unwrap_or_else(|e| panic!("{name}: the shape from {first:?} must be accepted by validation: {e}"));
            let v = Volume4D { footprint: Footprint::Polygon(polygon), altitude: band, time: window };
            black_box(v.envelopes().count());
            worst[0] = worst[0].max(t.elapsed().as_secs_f64());
            let t = Instant::now();
            black_box(geo4d::PreparedArea::new(std::slice::from_ref(&v)).intersects_any(std::slice::from_ref(&probe)));
            worst[1] = worst[1].max(t.elapsed().as_secs_f64());
            let t = Instant::now();
            black_box(v.relevant_to(&probe, 30.0));
            worst[2] = worst[2].max(t.elapsed().as_secs_f64());
            let t = Instant::now();
            black_box(indexed_search(tree, all, &v));
            worst[3] = worst[3].max(t.elapsed().as_secs_f64());
        }
        println!(
            "hostile {name}: worst validate+envelopes {:.1} µs, prepared exact test {:.1} µs, relevance {:.1} µs, search of 100k {:.1} µs",
            worst[0] * 1e6,
            worst[1] * 1e6,
            worst[2] * 1e6,
            worst[3] * 1e6
        );
    }
}
