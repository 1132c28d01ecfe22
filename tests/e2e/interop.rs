//! Both ways with an independent implementation: our participant and `tests/interop/minimal_uss.py`
//! (Python standard library only, written from the standard's YAML, sharing no code with us) plan
//! around each other through one DSS, each driven only through its flight_planning interface:
//! each fetches the other's details with a token for the other's host, includes the other's OVN
//! in its key (the DSS refuses otherwise), refuses or accepts by priority, and receives the
//! other's notifications.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::flight_planning::{area, fp_at, upsert, PLAN};
use crate::uss::{Cluster, FULL};

struct Python(Child);

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the Python USS; returns it and its base URL.
fn start_python(cluster: &Cluster) -> (Python, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/minimal_uss.py");
    let python = Python(
        Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--dss", &cluster.dss.url, "--client-id", "pyuss"])
            .args(["--token-url", &format!("{}/token", cluster.auth.url)])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the interop test needs python3"),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (python, url);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the Python USS did not start on port {port}");
}

async fn received_by_python(py: &str) -> Vec<Value> {
    let (s, r) = crate::harness::call("GET", &format!("{py}/test/received"), None, None).await;
    assert_eq!(s, 200, "{r}");
    r["received"].as_array().cloned().unwrap_or_default()
}

fn intent_of(notes: &Value) -> String {
    let notes = notes.as_str().unwrap_or_default();
    notes.rsplit(' ').next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_participant_and_an_independent_uss_plan_around_each_other() {
    let cluster = Cluster::start();
    let ours = cluster.participant_with(
        "alpha",
        &FULL,
        &cluster.dir.path().join("alpha"),
        &["--flight-planning", "--flight-planning-subject", "qualifier"],
    );
    let (_python, py) = start_python(&cluster);
    let plan = cluster.token("qualifier", PLAN).await;
    let put = |who: &'static str, id: String, body: Value| {
        let (base, plan) = (if who == "py" { py.clone() } else { ours.url.clone() }, plan.clone());
        async move { fp_at(&base, Some(&plan), "PUT", &format!("/flight_plans/{id}"), Some(&body)).await }
    };
    let new_id = || uuid::Uuid::new_v4().to_string();

    // The independent USS plans first.
    let (s, r) = put("py", new_id(), upsert("Planned", "Nominal", area(0.0, 300.0, 60, 1800), 0, "IfAllowed")).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
    let py_intent = intent_of(&r["notes"]);

    // Ours, at the same priority over it: refused, naming its operation (its details were read).
    let (s, r) =
        put("ours", new_id(), upsert("Planned", "Nominal", area(0.001, 200.0, 120, 1200), 0, "IfAllowed")).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Rejected")), "{r}");
    let notes = r["notes"].as_str().unwrap_or_default();
    assert!(notes.contains(&py_intent) && notes.contains("pyuss"), "{notes}");

    // Ours at a higher priority: planned, which the DSS allows only with the Python USS's OVN in
    // our key; the Python USS's implicit subscription hears of it.
    let (s, r) =
        put("ours", new_id(), upsert("Planned", "Nominal", area(0.001, 200.0, 120, 1200), 1, "IfAllowed")).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
    let mut heard = Vec::new();
    for _ in 0..50 {
        heard = received_by_python(&py).await;
        if heard.iter().any(|n| n["manager"] == "alpha") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(heard.iter().any(|n| n["manager"] == "alpha"), "the Python USS was not notified: {heard:?}");

    // The Python USS at priority 0 over our priority-1 flight: it reads our details (its token,
    // for our host, accepted by our participant) and refuses.
    let (s, r) = put("py", new_id(), upsert("Planned", "Nominal", area(0.001, 100.0, 300, 900), 0, "IfAllowed")).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Rejected")), "{r}");
    assert!(r["notes"].as_str().unwrap_or_default().contains("of alpha (priority 1)"), "{r}");

    // At priority 2 it may: planned with our OVN in its key, and it notifies us; our user is told
    // that a higher-priority operation now conflicts with our flight.
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let py_flight = new_id();
    let (s, r) =
        put("py", py_flight.clone(), upsert("Planned", "Nominal", area(0.001, 100.0, 300, 900), 2, "IfAllowed")).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
    let after = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut told = Value::Null;
    for _ in 0..50 {
        let (s, r) = fp_at(&ours.url, Some(&plan), "GET", &format!("/user_notifications?after={after}"), None).await;
        assert_eq!(s, 200, "{r}");
        if r["user_notifications"].as_array().is_some_and(|l| !l.is_empty()) {
            told = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!told.is_null(), "our participant did not tell its user of the Python USS's higher-priority flight");
    let message = told["user_notifications"][0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("pyuss"), "{told}");

    // The Python USS closes its flight through its interface; the DSS no longer holds it.
    let (s, r) = fp_at(&py, Some(&plan), "DELETE", &format!("/flight_plans/{py_flight}"), None).await;
    assert_eq!((s, r["planning_result"].as_str()), (200, Some("Completed")), "{r}");
}
