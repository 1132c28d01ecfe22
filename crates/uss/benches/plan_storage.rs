//! What a plan costs the participant's storage as its records grow: the write-ahead record and
//! the outcome (one entity row and the record's removal, in one transaction), at 10, 1,000 and
//! 100,000 stored intents; against the design it replaced (the whole state rewritten as one
//! JSON file, fsynced, on every change), measured in the same run at the sizes it can manage.
//!
//! `cargo bench -p uss --bench plan_storage` (plain main: prints a table).

use std::io::Write as _;
use std::time::Instant;

use uss::db::{Db, Table, Write};

/// A stored intent of realistic size: one circle volume with details and a reference (~900 bytes).
fn record(i: usize) -> serde_json::Value {
    serde_json::json!({"intent": {
        "reference": {"id": format!("{i:08}-f733-49af-bc14-8a18bd53ee39"), "manager": "alpha", "uss_availability": "Normal",
                      "version": 3, "state": "Accepted", "ovn": "6d1b4c2a-6a8e-4a7b-9a55-5e2bfb8f1f0e",
                      "time_start": {"value": "2027-01-15T08:00:00Z", "format": "RFC3339"},
                      "time_end": {"value": "2027-01-15T09:00:00Z", "format": "RFC3339"},
                      "uss_base_url": "https://uss.alpha.example/utm", "subscription_id": "0f3e0e9c-7f0b-4b0e-8f8e-9b1a3c5d7e9f"},
        "details": {"volumes": [{"volume": {"outline_circle": {"center": {"lat": 47.0 + i as f64 * 1e-6, "lng": 8.0}, "radius": {"value": 300, "units": "M"}},
                                 "altitude_lower": {"value": 0, "reference": "W84", "units": "M"},
                                 "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}},
                                 "time_start": {"value": "2027-01-15T08:00:00Z", "format": "RFC3339"},
                                 "time_end": {"value": "2027-01-15T09:00:00Z", "format": "RFC3339"}}],
                    "off_nominal_volumes": [], "priority": 0}},
        "notified": []})
}

const PLANS: usize = 200;

/// Microseconds per plan in the current design with `n` intents stored.
fn per_entity(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    let bodies: Vec<(String, String)> =
        (0..n).map(|i| (format!("{i:08}"), serde_json::to_string(&record(i)).expect("json"))).collect();
    for chunk in bodies.chunks(10_000) {
        let writes: Vec<Write> =
            chunk.iter().map(|(id, b)| Write::Put(Table::OwnIntents, id.clone(), b.clone())).collect();
        db.apply(&writes).expect("preload");
    }
    let started = Instant::now();
    for p in 0..PLANS {
        let id = format!("plan-{p}");
        let body = serde_json::to_string(&record(n + p)).expect("json");
        db.put(Table::Pending, &id, &serde_json::json!({"id": id, "change": {"kind": "delete_intent"}})).expect("wal");
        db.apply(&[Write::Put(Table::OwnIntents, id.clone(), body), Write::Delete(Table::Pending, id.clone())])
            .expect("outcome");
    }
    started.elapsed().as_secs_f64() * 1e6 / PLANS as f64
}

/// Microseconds per plan in the replaced design: the whole state as one JSON file, written to
/// a temporary file, fsynced and renamed, on every change.
fn whole_file(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut state: serde_json::Map<String, serde_json::Value> =
        (0..n).map(|i| (format!("{i:08}"), record(i))).collect();
    let plans = PLANS.min(50);
    let started = Instant::now();
    for p in 0..plans {
        state.insert(format!("plan-{p}"), record(n + p));
        let bytes = serde_json::to_vec_pretty(&state).expect("json");
        let tmp = dir.path().join("state.json.tmp");
        let mut f = std::fs::File::create(&tmp).expect("create");
        f.write_all(&bytes).expect("write");
        f.sync_all().expect("sync");
        std::fs::rename(&tmp, dir.path().join("state.json")).expect("rename");
        std::fs::File::open(dir.path()).and_then(|d| d.sync_all()).expect("dir sync");
    }
    started.elapsed().as_secs_f64() * 1e6 / plans as f64
}

fn main() {
    println!("plan storage cost (µs per plan: write-ahead record + outcome, each durable)");
    println!("{:>10} {:>14} {:>16} {:>8}", "intents", "per-entity", "whole-file JSON", "ratio");
    let base = per_entity(10);
    for n in [10usize, 1_000, 100_000] {
        let now = if n == 10 { base } else { per_entity(n) };
        let old = if n <= 1_000 { Some(whole_file(n)) } else { None };
        let old_text = old.map_or("(too slow)".to_owned(), |o| format!("{o:.0}"));
        let ratio = old.map_or(String::from("-"), |o| format!("{:.1}x", o / now));
        println!("{n:>10} {now:>14.0} {old_text:>16} {ratio:>8}");
    }
    println!("flatness: cost at 100,000 / cost at 10 = {:.2}", per_entity(100_000) / base);
}
