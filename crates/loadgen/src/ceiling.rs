//! What the etcd cluster itself can do, for the benchmark's baseline: closed-loop clients, each
//! on one member as the DSS instances are, send transactions of the pool's shape (compares on
//! keys that hold, puts of small values, on keys no other client touches, so none loses a race)
//! while one watch per member follows the prefix as each instance does. No DSS is involved: the
//! pool's figures divided by these tell how much of etcd's capacity the pool turns into writes.

use std::time::{Duration, Instant};

use store_etcd::{pb, EtcdConfig};

/// What a run committed: one latency per transaction.
pub struct Ceiling {
    pub seconds: f64,
    /// Per-transaction latency, microseconds.
    pub latencies_us: Vec<u64>,
    /// Transactions etcd refused or did not answer in time (a leader change, a timeout on a
    /// loaded machine), each sent again: they are etcd's, not the pool's, so they are counted
    /// and reported, not fatal, unless a client goes [`STALL`] without a commit.
    pub retried: u64,
}

/// How long a client may go without a commit before the run fails.
pub const STALL: Duration = Duration::from_secs(15);

/// Runs `clients` closed-loop clients for `duration`, spread over `endpoints`, each sending
/// transactions of `compares` compares and `puts` puts under `prefix`.
pub async fn run(
    endpoints: &[String],
    prefix: &str,
    clients: usize,
    duration: Duration,
    compares: usize,
    puts: usize,
) -> Result<Ceiling, String> {
    use pb::compare::TargetUnion;
    use pb::request_op::Request;
    let config = EtcdConfig { endpoints: endpoints.to_vec(), prefix: prefix.to_owned(), ..EtcdConfig::default() };
    let mut channels = Vec::new();
    let mut streaming = Vec::new();
    for url in endpoints {
        channels.push(config.channel(url, Some(Duration::from_secs(5))).map_err(|e| e.to_string())?);
        streaming.push(config.channel(url, None).map_err(|e| e.to_string())?);
    }
    if channels.is_empty() {
        return Err("no endpoints".into());
    }
    // One watch per member on the prefix, drained, as each instance's.
    let mut watches = tokio::task::JoinSet::new();
    for ch in &streaming {
        let (requests, mut stream) =
            pb::watch_prefix(ch, prefix, 0).await.map_err(|e| format!("watch: {}", e.message()))?;
        watches.spawn(async move {
            let _keep_open = requests;
            while let Ok(Some(_)) = stream.message().await {}
        });
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let ch = channels[c % channels.len()].clone();
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut retried = 0u64;
            let mut last_commit = Instant::now();
            let mut n = 0u64;
            // Each client commits at least once, even if etcd is busy electing all along.
            while Instant::now() < deadline || latencies.is_empty() {
                n += 1;
                let compare = (0..compares)
                    .map(|i| pb::Compare {
                        result: pb::compare_result::LESS,
                        target: pb::compare_target::MOD,
                        key: format!("{prefix}c/{c}/{i}").into_bytes(),
                        target_union: Some(TargetUnion::ModRevision(i64::MAX)),
                    })
                    .collect();
                let success = (0..puts)
                    .map(|i| pb::RequestOp {
                        request: Some(Request::RequestPut(pb::PutRequest {
                            key: format!("{prefix}p/{c}/{i}").into_bytes(),
                            value: n.to_le_bytes().to_vec(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let t = Instant::now();
                let request = pb::TxnRequest { compare, success, failure: Vec::new() };
                match pb::txn(&ch, request).await {
                    Ok(r) if r.succeeded => {
                        latencies.push(t.elapsed().as_micros() as u64);
                        last_commit = Instant::now();
                    }
                    // Nothing else writes these keys: a failed compare is a bug here.
                    Ok(_) => return Err("a ceiling transaction failed its compares".to_string()),
                    Err(e) if last_commit.elapsed() > STALL => {
                        return Err(format!(
                            "no ceiling transaction committed for {} s; the last error: {}",
                            STALL.as_secs(),
                            e.message()
                        ))
                    }
                    Err(_) => {
                        retried += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            Ok((latencies, retried))
        });
    }
    let mut latencies_us = Vec::new();
    let mut retried = 0;
    let mut failure = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((l, k))) => {
                latencies_us.extend(l);
                retried += k;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    watches.abort_all();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Ceiling { seconds, latencies_us, retried })
}
