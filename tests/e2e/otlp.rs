//! OpenTelemetry traces: a DSS and two participants export to a local OTLP/HTTP receiver, and
//! one plan is one trace across the three processes (the operator's request at bravo, bravo's
//! calls to the DSS and to alpha, and the DSS's and alpha's server spans under them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use crate::uss::{flight, op, Cluster, FULL};

/// One span as received: its service, name, kind, ids.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    kind: i32,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
}

/// A local OTLP/HTTP receiver: `POST /v1/traces` (protobuf), spans kept in memory.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                let mut out = kept.lock().expect("lock");
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            out.push(Span {
                                service: service.clone(),
                                name: s.name,
                                kind: s.kind,
                                trace: s.trace_id,
                                id: s.span_id,
                                parent: s.parent_span_id,
                            });
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_plan_is_one_trace_across_participants_and_the_dss() {
    let (otlp, spans) = receiver().await;
    let cluster = Cluster::start_with(&["--otlp-endpoint", &otlp]);
    let flags = ["--otlp-endpoint", otlp.as_str()];
    let alpha = cluster.participant_with("alpha", &FULL, &cluster.dir.path().join("alpha"), &flags);
    let bravo = cluster.participant_with("bravo", &FULL, &cluster.dir.path().join("bravo"), &flags);

    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 400.0, 0.0, 120.0, 300, 1500))).await;
    assert_eq!(s, 200, "{a}");
    // bravo's plan conflicts: it asks the DSS, then alpha for the details.
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.003, 8.0, 300.0, 50.0, 150.0, 900, 2100))).await;
    assert_eq!(s, 409, "{r}");

    // Batches leave every 0.5 s: wait (bounded) for bravo's plan and alpha's answer to it.
    let started = Instant::now();
    let trace = loop {
        let all = spans.lock().expect("lock").clone();
        let plan = all.iter().find(|s| s.service == "deconflict-uss-bravo" && s.name == "POST /operator/plan");
        if let Some(plan) = plan {
            let in_trace: Vec<Span> = all.iter().filter(|s| s.trace == plan.trace).cloned().collect();
            if in_trace.iter().any(|s| s.service == "deconflict-uss-alpha" && s.kind == SERVER)
                && in_trace.iter().any(|s| s.service == "deconflict-dss" && s.kind == SERVER)
            {
                break in_trace;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no complete trace of bravo's plan; spans: {all:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (s.id.as_slice(), s)).collect();
    let parent_of = |s: &Span| by_id.get(s.parent.as_slice()).copied();

    // The DSS's query span is the child of bravo's client span for it, itself under the plan.
    let dss_query = trace
        .iter()
        .find(|s| s.service == "deconflict-dss" && s.name == "POST /dss/v1/operational_intent_references/query")
        .unwrap_or_else(|| panic!("no DSS query span in the trace: {trace:#?}"));
    let caller = parent_of(dss_query).expect("the DSS span's parent is in the trace");
    assert_eq!((caller.service.as_str(), caller.kind), ("deconflict-uss-bravo", CLIENT), "{trace:#?}");
    assert_eq!(caller.name, "POST /dss/v1/operational_intent_references/query");
    let root = parent_of(caller).expect("the client span's parent");
    assert_eq!((root.name.as_str(), root.kind), ("POST /operator/plan", SERVER));

    // alpha's answer to bravo's request for details is in the same trace, under bravo's call.
    let details = trace
        .iter()
        .find(|s| s.service == "deconflict-uss-alpha" && s.name.starts_with("GET /uss/v1/operational_intents/"))
        .unwrap_or_else(|| panic!("no span of alpha's details answer: {trace:#?}"));
    let asked = parent_of(details).expect("parent of alpha's span");
    assert_eq!((asked.service.as_str(), asked.name.as_str()), ("deconflict-uss-bravo", "GET peer intent_details"));
}
