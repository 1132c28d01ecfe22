//! The map: the DSS's read-only airspace data (scope, box, no OVNs) over HTTP, and the browser
//! test of both pages (participant and DSS) in headless Chromium against a running demo.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn the_dss_map_shows_references_only_to_the_map_scope() {
    let dss = Dss::start();
    let writer = token("uss1", &[SC]);
    let (id, ovn, _) =
        create_intent(&dss, &writer, &intent_body(vec![circle(47.0, 8.0, 300.0, 60, 1800)], &[], "Accepted")).await;
    let map_data = |bbox: &str| dss.url(&format!("/map/data?bbox={bbox}"));

    // The page is public (it holds no data); the data needs the map scope.
    let page = client().get(dss.url("/map")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let (status, body) = call("GET", &map_data("7.9,46.9,8.1,47.1"), None, None).await;
    assert_error_shape(status, &body, 401, "map data without a token");
    let (status, body) = call("GET", &map_data("7.9,46.9,8.1,47.1"), Some(&writer), None).await;
    assert_error_shape(status, &body, 403, "map data with only utm.strategic_coordination");

    let viewer = token("authority", &["deconflict.map.read"]);
    let (status, view) = call("GET", &map_data("7.9,46.9,8.1,47.1"), Some(&viewer), None).await;
    assert_eq!(status, 200, "{view}");
    let entities = view["entities"].as_array().expect("entities");
    let mine = entities.iter().find(|e| e["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not in {view}"));
    assert_eq!((mine["manager"].as_str(), mine["state"].as_str()), (Some("uss1"), Some("Accepted")));
    assert_eq!(mine["volumes"][0]["circle"]["radius_m"], 300.0);
    assert!(mine["ovn"].is_null() && !view.to_string().contains(&ovn), "the map shows an OVN: {view}");

    // Elsewhere: nothing. Bad and oversized boxes: 400 and 413 in ErrorResponse shape.
    let (status, view) = call("GET", &map_data("9.0,46.0,9.1,46.1"), Some(&viewer), None).await;
    assert_eq!((status, view["entities"].as_array().map(Vec::len)), (200, Some(0)), "{view}");
    for bad in ["8.1,46.9,7.9,47.1", "a,b,c,d", "1,2,3"] {
        let (status, body) = call("GET", &map_data(bad), Some(&viewer), None).await;
        assert_error_shape(status, &body, 400, bad);
    }
    let (status, body) = call("GET", &dss.url("/map/data"), Some(&viewer), None).await;
    assert_error_shape(status, &body, 400, "no bbox");
    let (status, body) = call("GET", &map_data("-10,35,30,60"), Some(&viewer), None).await;
    assert_error_shape(status, &body, 413, "a box of a continent");
}

/// Runs `crates/map/web/test/map.test.mjs` (playwright-core driving Debian's Chromium) against
/// `deconflict demo --keep-running`; screenshots of each step go to `target/map-screenshots/`.
/// Needs Node.js, `npm ci` in `crates/map/web` and `/usr/bin/chromium`: `scripts/test.sh`
/// installs them; without them this test fails and says what is missing.
#[test]
fn the_map_in_a_browser_plans_around_others_and_hears_changes_live() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("crates/map/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "the browser test needs `npm ci` in crates/map/web (scripts/test.sh runs it)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "the browser test needs Chromium at {chromium} (apt-get install chromium)");

    let tmp = tempfile::tempdir().expect("tmp");
    let ready = tmp.path().join("ready.json");
    // The participants' maps draw a local tile archive (the DSS's keeps the offline basemap).
    let tiles = tmp.path().join("test-basemap.pmtiles");
    map::testing::write_raster_archive(&tiles);
    let log = std::fs::File::create(tmp.path().join("demo.out")).expect("log");
    let mut demo = Command::new(BIN)
        .args(["demo", "--keep-running", "--ready-file"])
        .arg(&ready)
        .arg("--map-tiles")
        .arg(&tiles)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let started = Instant::now();
    while !ready.exists() && started.elapsed() < Duration::from_secs(60) && demo.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let demo_out = || std::fs::read_to_string(tmp.path().join("demo.out")).unwrap_or_default();
    if !ready.exists() {
        let _ = demo.kill();
        panic!("the demo did not come up within 60 s:\n{}", demo_out());
    }
    let ready_json: Value = serde_json::from_slice(&std::fs::read(&ready).expect("ready")).expect("ready json");
    assert!(
        ready_json["bravo"]["operator"].as_str().is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{ready_json}"
    );

    let shots = root.join("target/map-screenshots");
    // Screenshots of an earlier run must not stand in for this one's.
    let _ = std::fs::remove_dir_all(&shots);
    let mut node = Command::new("node")
        .arg("test/map.test.mjs")
        .arg(&ready)
        .arg(&shots)
        .current_dir(&web)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js) is needed for the browser test");
    // The script bounds itself at 180 s; this is the backstop.
    let started = Instant::now();
    let status = loop {
        if let Some(s) = node.try_wait().expect("wait for node") {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = node.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = node.wait_with_output().expect("node output");
    // SIGTERM lets the demo stop the servers it started.
    let _ = Command::new("kill").arg("-TERM").arg(demo.id().to_string()).status();
    let stopped = Instant::now();
    while demo.try_wait().ok().flatten().is_none() && stopped.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = demo.kill();
    let _ = demo.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser test failed ({status:?}):\n{stdout}\n{stderr}\ndemo:\n{}",
        demo_out()
    );
    assert!(stdout.contains("map test passed"), "{stdout}");
    for step in ["login", "airspace", "refused", "accepted", "live", "dss"] {
        let found = std::fs::read_dir(&shots)
            .expect("screenshots")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(step));
        assert!(found, "no screenshot of `{step}` in {}", shots.display());
    }
}
