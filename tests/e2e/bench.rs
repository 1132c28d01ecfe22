//! A short smoke run of every benchmark workload, so the benchmark never rots. It asserts
//! correctness only (no 5xx, no lost writes, right subscriber lists), never timings.

use serde_json::Value;

use crate::harness::BIN;

/// Runs `deconflict bench --smoke <args>` in a fresh directory and returns its report. Its output
/// is kept in a file; when it fails, the end of that output is the panic's message, so that the
/// reason is where a reader of a long, parallel test log looks.
fn smoke(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.json");
    let log_path = dir.path().join("output.txt");
    let log = std::fs::File::create(&log_path).expect("output file");
    let status = std::process::Command::new(BIN)
        .args(["bench", "--smoke"])
        .args(args)
        .arg("--out")
        .arg(&out)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        // An error's message, not the backtrace anyhow would add to it.
        .env("RUST_LIB_BACKTRACE", "0")
        .stdout(log.try_clone().expect("output file"))
        .stderr(log)
        .status()
        .expect("run the benchmark");
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let end = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!("deconflict bench --smoke {} failed ({status}); the end of its output:\n{end}", args.join(" "));
    }
    serde_json::from_slice(&std::fs::read(&out).expect("report")).expect("json")
}

#[test]
fn bench_smoke_run_is_correct() {
    let report = smoke(&[]);
    let workloads = report["workloads"].as_array().expect("workloads");
    let names: Vec<&str> = workloads.iter().map(|w| w["workload"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "busy-area (baseline: serial commits)",
            "busy-area",
            "city",
            "subscriptions",
            "restart",
            "soak",
            "planning",
            "planning (every 10th peer answer after 2 s)",
            "rid busy-area (baseline: serial commits, ISA writes only)",
            "rid busy-area (ISA writes only)",
            "rid busy-area (searches only)",
            "rid busy-area (half writers, half searchers)",
            "rid city (ISA writes only)",
            "rid city (searches only)",
            "rid city (half writers, half searchers)",
            "telemetry",
            "rid-display"
        ]
    );
    for w in workloads {
        let name = w["workload"].as_str().expect("name");
        assert_eq!(w["server_5xx_or_transport_errors"], 0, "{name}: {w}");
        assert_eq!(w["lost_writes"], 0, "{name}: {w}");
        assert_eq!(w["subscriber_list_mismatches"], 0, "{name}: {w}");
        if name != "restart" {
            let ok: u64 = w["ops"].as_array().expect("ops").iter().map(|o| o["ok"].as_u64().expect("ok")).sum();
            assert!(ok > 0, "{name} did no work: {w}");
            // The serial baseline may give up under contention (409 after its retries): that
            // collapse is what it exists to show. Our design must not.
            if !name.contains("baseline") {
                for o in w["ops"].as_array().expect("ops") {
                    assert_eq!(o["errors"], 0, "{name}: {o}");
                }
            }
        }
    }
    let subs = &workloads[3];
    assert!(subs["subscriber_lists_checked"].as_u64().expect("checked") > 0, "{subs}");
    assert!(workloads[4]["restart_seconds"].as_f64().expect("restart") > 0.0);
    // Remote ID: every busy-area ISA write named exactly the area's ten subscriptions, the
    // writes are read against the serial baseline of the run, and searches found ISAs.
    let rid_writes = &workloads[9];
    assert!(rid_writes["subscriber_lists_checked"].as_u64().expect("checked") > 0, "{rid_writes}");
    assert!(rid_writes["baseline_writes_per_s"].as_f64().expect("baseline") > 0.0, "{rid_writes}");
    assert_eq!(workloads[12]["preload_count"], 400, "the city's ISAs: {}", workloads[12]);
    // Both scales report what a search found. The busy area's searches cover the whole
    // square: they find the flights live there (at most one per writer client); at smoke size
    // the city is too sparse for a search to hit, so only its figure is required.
    let found = |w: &Value| {
        let notes = w["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect::<Vec<_>>();
        notes
            .iter()
            .find_map(|n| n.strip_prefix("a search found ").and_then(|r| r.split(' ').next()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no search figure in {notes:?}"))
    };
    let busy = found(&workloads[10]);
    assert!(busy > 0.0 && busy <= 8.0, "a busy-area search found {busy} ISAs: {}", workloads[10]);
    let city = found(&workloads[13]);
    assert!(city.is_finite() && city >= 0.0, "a city search found {city} ISAs: {}", workloads[13]);
    // Live flights: positions ingested, and every deviation reached the DSS and the subscriber
    // (the run fails otherwise; here each latency was measured at least once).
    let telemetry = &workloads[15];
    let op = |kind: &str| {
        telemetry["ops"].as_array().expect("ops").iter().find(|o| o["kind"] == kind).cloned().unwrap_or_default()
    };
    assert!(op("position")["ok"].as_u64().is_some_and(|n| n > 0), "{telemetry}");
    assert!(op("dev->dss")["ok"].as_u64().is_some_and(|n| n > 0), "{telemetry}");
    assert_eq!(op("dev->dss")["ok"], op("dev->subscriber")["ok"], "{telemetry}");
    // Remote ID display: every view showed the flight at its centre (the run fails otherwise),
    // and the freshness of what was shown was measured.
    let display = &workloads[16];
    let fresh = display["ops"].as_array().expect("ops").iter().find(|o| o["kind"] == "freshness").cloned();
    assert!(fresh.is_some_and(|o| o["ok"].as_u64().is_some_and(|n| n > 0)), "{display}");
}

/// The pool's benchmark (busy-area and city against a local etcd cluster, with and without the
/// injected delay between members, and the city's embedded baseline): correctness only.
#[test]
fn bench_smoke_run_on_a_pool_is_correct() {
    let report = smoke(&["--store", "etcd", "--members", "3", "--workload", "busy-area,city,rid,national"]);
    let workloads = report["workloads"].as_array().expect("workloads");
    let names: Vec<&str> = workloads.iter().map(|w| w["workload"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        [
            "busy-area (baseline: serial commits)",
            "busy-area",
            "etcd alone (the pool's transaction shape)",
            "busy-area (pool, 16.5 +/- 7.5 ms between members)",
            "city (embedded store, the pool's baseline)",
            "city (pool)",
            "city (pool, 16.5 +/- 7.5 ms between members)",
            "rid busy-area (ISA writes only) (pool)",
            "rid busy-area (searches only) (pool)",
            "rid busy-area (half writers, half searchers) (pool)",
            "etcd alone (the pool's transaction shape)",
            "rid city (ISA writes only) (pool)",
            "rid city (searches only) (pool)",
            "rid city (half writers, half searchers) (pool)",
            "national"
        ]
    );
    for w in workloads {
        let name = w["workload"].as_str().expect("name");
        assert_eq!(w["server_5xx_or_transport_errors"], 0, "{name}: {w}");
        assert_eq!(w["lost_writes"], 0, "{name}: {w}");
        let ok: u64 = w["ops"].as_array().expect("ops").iter().map(|o| o["ok"].as_u64().expect("ok")).sum();
        assert!(ok > 0, "{name} did no work: {w}");
    }
    // The pool's busy-area figure is read against etcd alone in the same invocation...
    let note = workloads[1]["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect::<Vec<_>>();
    assert!(note.iter().any(|n| n.contains("of etcd alone in this run")), "{note:?}");
    assert!(workloads[2]["successful_writes_per_s"].as_f64().expect("ceiling") > 0.0);
    // ...and its city figures against the embedded run of the same invocation.
    assert!(workloads[5]["baseline_writes_per_s"].as_f64().expect("baseline") > 0.0);
    // Remote ID through the pool: the subscriber lists hold, and the writes are read against
    // etcd alone sending their own transaction shape.
    let rid_writes = &workloads[7];
    assert!(rid_writes["subscriber_lists_checked"].as_u64().expect("checked") > 0, "{rid_writes}");
    assert_eq!(rid_writes["subscriber_list_mismatches"], 0, "{rid_writes}");
    let note = rid_writes["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect::<Vec<_>>();
    assert!(note.iter().any(|n| n.contains("of etcd alone in this run")), "{note:?}");
    assert!(workloads[10]["parameters"]["compares"].as_u64().expect("compares") > 0, "{}", workloads[10]);
    // The national day: 24 hours at their own rates through the pool's three instances, every
    // kind of request of a flight done, then the peak hour multiplied.
    let national = &workloads[14];
    let hours = national["parameters"]["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24, "{national}");
    let offered = |h: usize| hours[h]["offered_flights_per_s"].as_f64().expect("offered");
    assert!(offered(13) > 3.0 * offered(3), "the day peaks in the afternoon: {national}");
    assert_eq!(national["parameters"]["instances"], 3);
    let kinds: Vec<&str> = national["ops"].as_array().expect("ops").iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in ["plan", "activate", "isa-create", "isa-update", "isa-search", "isa-delete", "end"] {
        assert!(kinds.contains(&kind), "no `{kind}` in the national day: {kinds:?}");
    }
    for o in national["ops"].as_array().expect("ops") {
        assert_eq!(o["errors"], 0, "{o}");
    }
    assert!(!national["parameters"]["ramp"].as_array().expect("ramp").is_empty(), "{national}");
}
