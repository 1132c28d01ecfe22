//! Latency recording and the printed/JSON report.

use std::collections::BTreeMap;

use serde::Serialize;

/// Per-task recorder; merged at the end of a phase.
#[derive(Default, Clone)]
pub struct Recorder {
    ops: BTreeMap<&'static str, Op>,
    pub retries_409: u64,
    pub server_5xx: u64,
    pub requests: u64,
}

#[derive(Default, Clone)]
struct Op {
    ok_latencies_us: Vec<u64>,
    errors: u64,
}

impl Recorder {
    pub fn ok(&mut self, kind: &'static str, micros: u64) {
        self.requests += 1;
        self.ops.entry(kind).or_default().ok_latencies_us.push(micros);
    }
    pub fn err(&mut self, kind: &'static str, status: u16) {
        self.requests += 1;
        if status >= 500 || status == 0 {
            self.server_5xx += 1;
        }
        self.ops.entry(kind).or_default().errors += 1;
    }
    /// A 409 the generator handles by re-querying and retrying, as a planner would.
    pub fn retry(&mut self) {
        self.requests += 1;
        self.retries_409 += 1;
    }
    pub fn merge(&mut self, other: Recorder) {
        for (k, op) in other.ops {
            let mine = self.ops.entry(k).or_default();
            mine.ok_latencies_us.extend(op.ok_latencies_us);
            mine.errors += op.errors;
        }
        self.retries_409 += other.retries_409;
        self.server_5xx += other.server_5xx;
        self.requests += other.requests;
    }
    pub fn count(&self, kinds: &[&str]) -> u64 {
        kinds.iter().filter_map(|k| self.ops.get(k)).map(|o| o.ok_latencies_us.len() as u64).sum()
    }
    pub fn into_ops(self, seconds: f64) -> Vec<OpReport> {
        self.ops
            .into_iter()
            .map(|(kind, mut op)| {
                op.ok_latencies_us.sort_unstable();
                let q = |p: f64| {
                    let v = &op.ok_latencies_us;
                    if v.is_empty() {
                        return 0.0;
                    }
                    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
                };
                OpReport {
                    kind: kind.to_owned(),
                    ok: op.ok_latencies_us.len() as u64,
                    per_s: op.ok_latencies_us.len() as f64 / seconds.max(1e-9),
                    p50_ms: q(0.50),
                    p95_ms: q(0.95),
                    p99_ms: q(0.99),
                    max_ms: q(1.0),
                    errors: op.errors,
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub kind: String,
    pub ok: u64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct WorkloadReport {
    pub workload: String,
    pub parameters: serde_json::Value,
    pub measured_seconds: f64,
    pub ops: Vec<OpReport>,
    pub successful_writes_per_s: f64,
    pub successful_queries_per_s: f64,
    pub retries_409: u64,
    pub server_5xx_or_transport_errors: u64,
    pub preload_count: u64,
    pub preload_seconds: f64,
    pub lost_writes: u64,
    pub subscriber_lists_checked: u64,
    pub subscriber_list_mismatches: u64,
    pub live_intents: u64,
    pub server_peak_rss_mib: f64,
    pub rss_bytes_per_live_intent: f64,
    pub restart_seconds: f64,
    pub baseline_writes_per_s: f64,
    /// Server CPU time (user + system, all its threads) per request in the measured window:
    /// the cost of a request, much steadier than throughput on a shared machine.
    pub server_cpu_us_per_request: f64,
    /// The generator's own CPU time per request in the same window.
    pub generator_cpu_us_per_request: f64,
    /// Per-window figures of a long run (the soak workload).
    pub windows: Vec<WindowReport>,
    pub notes: Vec<String>,
}

/// One window of a long run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct WindowReport {
    pub start_s: u64,
    pub requests_per_s: f64,
    pub writes_per_s: f64,
    pub query_p99_ms: f64,
    pub write_p99_ms: f64,
    /// The store's files (log segments and snapshot) and the server's RSS at the window's end.
    pub store_mib: f64,
    pub rss_mib: f64,
    /// Compactions that finished in the window (the snapshot file changed).
    pub compactions: u32,
}

impl WorkloadReport {
    pub fn print(&self) {
        println!();
        println!("== {} ==  {}", self.workload, self.parameters);
        if self.preload_count > 0 {
            println!(
                "preload: {} in {:.1} s ({:.0}/s)",
                self.preload_count,
                self.preload_seconds,
                self.preload_count as f64 / self.preload_seconds.max(1e-9)
            );
        }
        if !self.ops.is_empty() {
            println!(
                "{:<14}{:>9}{:>10}{:>9}{:>9}{:>9}{:>9}{:>8}",
                "op", "ok", "ok/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
            );
            for o in &self.ops {
                println!(
                    "{:<14}{:>9}{:>10.0}{:>9.2}{:>9.2}{:>9.2}{:>9.1}{:>8}",
                    o.kind, o.ok, o.per_s, o.p50_ms, o.p95_ms, o.p99_ms, o.max_ms, o.errors
                );
            }
            println!(
                "measured {:.1} s: {:.0} successful writes/s, {:.0} queries/s, {} 409 retries, {} 5xx/transport errors",
                self.measured_seconds,
                self.successful_writes_per_s,
                self.successful_queries_per_s,
                self.retries_409,
                self.server_5xx_or_transport_errors
            );
        }
        if self.server_cpu_us_per_request > 0.0 {
            println!(
                "CPU per request: server {:.1} us, generator {:.1} us (user + system, measured window)",
                self.server_cpu_us_per_request, self.generator_cpu_us_per_request
            );
        }
        if self.restart_seconds > 0.0 {
            println!("restart: serving again {:.2} s after start", self.restart_seconds);
        }
        println!(
            "live intents {}, server peak RSS {:.1} MiB, {:.0} bytes RSS per live intent; lost writes {}; subscriber lists checked {} (mismatches {})",
            self.live_intents,
            self.server_peak_rss_mib,
            self.rss_bytes_per_live_intent,
            self.lost_writes,
            self.subscriber_lists_checked,
            self.subscriber_list_mismatches
        );
        if !self.windows.is_empty() {
            println!(
                "{:>8}{:>10}{:>10}{:>14}{:>14}{:>11}{:>10}{:>13}",
                "window", "req/s", "writes/s", "query p99 ms", "write p99 ms", "store MiB", "RSS MiB", "compactions"
            );
            for w in &self.windows {
                println!(
                    "{:>7}s{:>10.0}{:>10.0}{:>14.2}{:>14.2}{:>11.1}{:>10.1}{:>13}",
                    w.start_s,
                    w.requests_per_s,
                    w.writes_per_s,
                    w.query_p99_ms,
                    w.write_p99_ms,
                    w.store_mib,
                    w.rss_mib,
                    w.compactions
                );
            }
        }
        for n in &self.notes {
            println!("note: {n}");
        }
    }
}
