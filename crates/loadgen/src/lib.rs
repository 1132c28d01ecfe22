//! The benchmark: starts a DSS process on a fresh data directory with real JWT verification and
//! drives it over HTTP from this process, as several participants would. Every run is bounded in
//! requests and time and talks only to 127.0.0.1.
//!
//! Workloads (see `workloads`, `planning` and `rid`): `busy-area`, `city`, `subscriptions`,
//! `restart`, `soak`, `planning`, `rid`, `telemetry`, `rid-display`. Each prints a table and adds a section to a JSON report.

mod ceiling;
mod conn;
mod national;
mod planning;
mod rid;
mod rid_display;
mod shapes;
mod stats;
mod telemetry;
mod workloads;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

pub use stats::WorkloadReport;

/// What to run and how big.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub workloads: Vec<String>,
    /// Seconds of measured load per workload (after any preload).
    pub duration_s: u64,
    /// Concurrent planners / clients.
    pub concurrency: usize,
    /// Live intents preloaded by `city`.
    pub city_intents: usize,
    /// Live subscriptions preloaded by `subscriptions`.
    pub subscriptions: usize,
    /// Intents written to disk before the `restart` measurement.
    pub restart_intents: usize,
    /// Upper bound on requests of the measured phase, per workload.
    pub max_requests: u64,
    pub seed: u64,
    /// `embedded`, or `etcd`: busy-area and city then run against a pool (a local etcd cluster
    /// of `members` and one DSS instance per member, the load spread over the instances).
    #[serde(default = "embedded")]
    pub store: String,
    #[serde(default = "three")]
    pub members: usize,
    /// With `store = etcd`: how pool instances make reads consistent, `lease` (local reads
    /// under read leases, `--etcd-read-leases`) or `quorum` (a quorum read per operation).
    #[serde(default = "lease")]
    pub pool_reads: String,
    /// With `store = etcd`: busy-area runs once more with this one-way delay (milliseconds,
    /// mean and +/- jitter) injected between etcd members by a proxy in the bench.
    #[serde(default = "default_delay")]
    pub peer_delay_ms: (f64, f64),
    /// Seconds of the `soak` workload (the city mix with compactions during the run).
    #[serde(default = "default_soak")]
    pub soak_s: u64,
    /// Live ISAs preloaded by `rid`'s city.
    #[serde(default = "default_rid_isas")]
    pub rid_isas: usize,
    /// `telemetry`: flights streaming positions into one participant, and their rate (Hz).
    #[serde(default = "default_telemetry_flights")]
    pub telemetry_flights: usize,
    #[serde(default = "default_telemetry_hz")]
    pub telemetry_hz: f64,
    /// `rid-display`: display views watched (its flights are `telemetry_flights`).
    #[serde(default = "default_rid_views")]
    pub rid_views: usize,
    /// `national`: the country's size as a multiple of the US's traffic, and the wall-clock
    /// seconds of one simulated hour.
    #[serde(default = "one")]
    pub national_scale: f64,
    #[serde(default = "default_national_hour")]
    pub national_hour_s: f64,
}

fn one() -> f64 {
    1.0
}

fn default_national_hour() -> f64 {
    2.5
}

fn default_rid_views() -> usize {
    16
}

fn default_telemetry_flights() -> usize {
    1_000
}

fn default_telemetry_hz() -> f64 {
    10.0
}

fn default_rid_isas() -> usize {
    100_000
}

fn default_soak() -> u64 {
    60
}

/// The reference's inter-organization latency: 16.5 ms +/- 7.5 ms one way.
fn default_delay() -> (f64, f64) {
    (16.5, 7.5)
}

fn embedded() -> String {
    "embedded".into()
}

fn lease() -> String {
    "lease".into()
}

fn three() -> usize {
    3
}

impl BenchConfig {
    pub fn full() -> Self {
        Self {
            workloads: vec![
                "busy-area".into(),
                "city".into(),
                "subscriptions".into(),
                "restart".into(),
                "soak".into(),
                "planning".into(),
                "rid".into(),
                "telemetry".into(),
                "rid-display".into(),
            ],
            duration_s: 20,
            concurrency: 16,
            city_intents: 100_000,
            subscriptions: 10_000,
            restart_intents: 1_000_000,
            max_requests: 5_000_000,
            seed: 7,
            store: embedded(),
            members: three(),
            pool_reads: lease(),
            peer_delay_ms: default_delay(),
            soak_s: default_soak(),
            rid_isas: default_rid_isas(),
            telemetry_flights: default_telemetry_flights(),
            telemetry_hz: default_telemetry_hz(),
            rid_views: default_rid_views(),
            national_scale: one(),
            national_hour_s: default_national_hour(),
        }
    }
    /// A few seconds of everything at tiny sizes: keeps the benchmark from rotting.
    pub fn smoke() -> Self {
        Self {
            duration_s: 2,
            concurrency: 8,
            city_intents: 400,
            subscriptions: 300,
            restart_intents: 2_000,
            max_requests: 20_000,
            soak_s: 4,
            rid_isas: 400,
            telemetry_flights: 20,
            telemetry_hz: 2.0,
            rid_views: 4,
            national_hour_s: 0.25,
            ..Self::full()
        }
    }
}

/// Keys for the run: the DSS trusts `public_pem`, the generator signs with `private_pem`.
pub struct Keys {
    pub private_pem: Vec<u8>,
    pub public_pem: Vec<u8>,
}

/// The relevance margin every benchmarked DSS runs with (passed explicitly, so the
/// generator's oracle of subscriber lists matches what the DSS decides).
pub const RELEVANCE_MARGIN_M: f64 = 30.0;

/// A DSS child process on a free loopback port (for a pool: the first instance, with the
/// others and the etcd cluster alongside).
pub struct Server {
    child: Child,
    pub base: String,
    /// The first instance's data directory.
    pub data_dir: PathBuf,
    others: Vec<Server>,
    cluster: Option<etcd_cluster::LocalCluster>,
}

impl Server {
    pub fn start(exe: &Path, data_dir: &Path, public_key: &Path, extra: &[&str]) -> Result<Server> {
        let mut child = Command::new(exe)
            .args([
                "dss",
                "--listen",
                "127.0.0.1:0",
                "--allow-http-base-urls",
                "--jwt-audience",
                "localhost",
                "--data-dir",
            ])
            .arg(data_dir)
            .arg("--jwt-public-key")
            .arg(public_key)
            .args(["--relevance-margin-m", &RELEVANCE_MARGIN_M.to_string()])
            // The benchmark measures capacity: no per-subject rate limit.
            .args(["--rate-limit-per-sub", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(base) = line.trim().strip_prefix("deconflict dss listening on ") else {
            let _ = child.kill();
            bail!("the DSS did not start (printed `{}`)", line.trim());
        };
        Ok(Server { base: base.to_owned(), data_dir: data_dir.to_path_buf(), child, others: Vec::new(), cluster: None })
    }

    /// The instance client `k` talks to: the load is spread over a pool's instances.
    pub fn base_for(&self, k: usize) -> &str {
        let n = 1 + self.others.len();
        match k % n {
            0 => &self.base,
            i => &self.others[i - 1].base,
        }
    }

    /// How many DSS instances serve this run.
    pub fn instances(&self) -> usize {
        1 + self.others.len()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds (user + system) the server has used so far, from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&self.pid().to_string())
    }

    /// Peak and current resident set size in bytes, from /proc.
    pub fn rss_bytes(&self) -> (u64, u64) {
        rss_bytes_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.others.clear();
        self.cluster.take();
    }
}

/// Peak and current resident set size of process `pid` in bytes, from /proc (0 if unreadable).
pub fn rss_bytes_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one), from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s on Linux); 0 if unreadable.
pub fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields are counted after its closing paren.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // The text after the paren starts at field 3 (state); utime and stime are fields 14, 15.
    let field = |n: usize| rest.split_whitespace().nth(n - 3).and_then(|v| v.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(u), Some(s)) => (u + s) as f64 / 100.0,
        _ => 0.0,
    }
}

/// Signs a token for `sub` with the run's private key.
pub fn mint(keys: &Keys, sub: &str, scopes: &[&str]) -> Result<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (key, alg) = match EncodingKey::from_ec_pem(&keys.private_pem) {
        Ok(k) => (k, Algorithm::ES256),
        Err(_) => (EncodingKey::from_rsa_pem(&keys.private_pem)?, Algorithm::RS256),
    };
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "deconflict-bench", "sub": sub, "aud": "localhost", "scope": scopes.join(" "),
        "iat": now, "exp": now + 3600, "jti": uuid::Uuid::new_v4().to_string(),
    });
    Ok(jsonwebtoken::encode(&Header::new(alg), &claims, &key)?)
}

/// Everything a workload needs.
pub struct Ctx {
    pub exe: PathBuf,
    pub work_dir: PathBuf,
    pub public_key_path: PathBuf,
    pub keys: Keys,
    pub config: BenchConfig,
}

impl Ctx {
    fn fresh_server(&self, name: &str, extra: &[&str]) -> Result<Server> {
        let dir = self.work_dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        Server::start(&self.exe, &dir, &self.public_key_path, extra)
    }

    /// A fresh server for a workload that can run against a pool: with `store = etcd`, a local
    /// etcd cluster and one DSS instance per member.
    async fn fresh_pool_or_server(&self, name: &str, extra: &[&str]) -> Result<Server> {
        self.fresh_pool_with(name, extra, None).await
    }

    /// [`Self::fresh_pool_or_server`], with a delay between the etcd members when given.
    async fn fresh_pool_with(
        &self,
        name: &str,
        extra: &[&str],
        delay: Option<etcd_cluster::PeerDelay>,
    ) -> Result<Server> {
        if self.config.store != "etcd" {
            return self.fresh_server(name, extra);
        }
        let dir = self.work_dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cluster = etcd_cluster::LocalCluster::start_with(self.config.members.max(1), &dir, delay)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut servers = Vec::new();
        for i in 0..cluster.client_urls.len() {
            let endpoints = cluster.endpoints_for(i).join(",");
            let mut args = vec!["--store", "etcd", "--etcd-endpoints", endpoints.as_str()];
            if self.config.pool_reads == "lease" {
                args.push("--etcd-read-leases");
            }
            args.extend_from_slice(extra);
            servers.push(Server::start(&self.exe, &dir.join(format!("dss-{i}")), &self.public_key_path, &args)?);
        }
        let mut first = servers.remove(0);
        first.others = servers;
        first.cluster = Some(cluster);
        Ok(first)
    }
}

/// Runs the configured workloads and returns their reports (also printed as tables).
pub async fn run(exe: PathBuf, work_dir: PathBuf, keys: Keys, config: BenchConfig) -> Result<Vec<WorkloadReport>> {
    std::fs::create_dir_all(&work_dir)?;
    let public_key_path = work_dir.join("bench-public.pem");
    std::fs::write(&public_key_path, &keys.public_pem)?;
    let ctx = Ctx { exe, work_dir, public_key_path, keys, config: config.clone() };
    let mut reports = Vec::new();
    for w in &config.workloads {
        let report = match w.as_str() {
            "busy-area" => {
                // The same workload against the naive design first: the ratio is measured in
                // this run, on this machine.
                let baseline = workloads::busy_area(&ctx, true).await?;
                baseline.print();
                let mut ours = workloads::busy_area(&ctx, false).await?;
                let ratio = ours.successful_writes_per_s / baseline.successful_writes_per_s.max(1e-9);
                ours.notes.push(format!(
                    "{:.1}x the successful writes/s of the serial baseline measured in this run ({:.0}/s)",
                    ratio, baseline.successful_writes_per_s
                ));
                ours.baseline_writes_per_s = baseline.successful_writes_per_s;
                let baseline_writes_per_s = baseline.successful_writes_per_s;
                reports.push(baseline);
                if ctx.config.store == "etcd" {
                    // etcd alone on the same machine: how much of its capacity the pool uses.
                    let ceiling = workloads::etcd_ceiling(&ctx).await?;
                    ours.notes.push(format!(
                        "{:.0}% of the transactions/s of etcd alone in this run ({:.0}/s of {} compares and {} puts, {} clients, no DSS)",
                        100.0 * ours.successful_writes_per_s / ceiling.successful_writes_per_s.max(1e-9),
                        ceiling.successful_writes_per_s,
                        workloads::CEILING_COMPARES,
                        workloads::CEILING_PUTS,
                        ctx.config.concurrency
                    ));
                    // Once more with inter-organization latency between the members.
                    ours.print();
                    ceiling.print();
                    let (mean_ms, jitter_ms) = ctx.config.peer_delay_ms;
                    let delay = etcd_cluster::PeerDelay { mean_ms, jitter_ms };
                    let mut delayed = workloads::busy_area_with(&ctx, Some(delay)).await?;
                    delayed.workload = format!("busy-area (pool, {mean_ms} +/- {jitter_ms} ms between members)");
                    delayed.baseline_writes_per_s = baseline_writes_per_s;
                    reports.push(ours);
                    reports.push(ceiling);
                    delayed
                } else {
                    ours
                }
            }
            "city" if ctx.config.store == "etcd" => {
                // The embedded store in the same run is the baseline of the pool's figures.
                let embedded = workloads::city_embedded(&ctx).await?;
                embedded.print();
                let vs = |r: &mut WorkloadReport, e: &WorkloadReport| {
                    r.notes.push(format!(
                        "queries at {:.0}% and writes at {:.0}% of the embedded store's in this run ({:.0} q/s, {:.0} w/s)",
                        100.0 * r.successful_queries_per_s / e.successful_queries_per_s.max(1e-9),
                        100.0 * r.successful_writes_per_s / e.successful_writes_per_s.max(1e-9),
                        e.successful_queries_per_s,
                        e.successful_writes_per_s
                    ));
                    r.baseline_writes_per_s = e.successful_writes_per_s;
                };
                let mut pool = workloads::city(&ctx).await?;
                pool.workload = "city (pool)".into();
                vs(&mut pool, &embedded);
                pool.print();
                let (mean_ms, jitter_ms) = ctx.config.peer_delay_ms;
                let delay = etcd_cluster::PeerDelay { mean_ms, jitter_ms };
                let mut delayed = workloads::city_with(&ctx, Some(delay)).await?;
                delayed.workload = format!("city (pool, {mean_ms} +/- {jitter_ms} ms between members)");
                vs(&mut delayed, &embedded);
                reports.push(embedded);
                reports.push(pool);
                delayed
            }
            "city" => workloads::city(&ctx).await?,
            "subscriptions" => workloads::subscriptions(&ctx).await?,
            "restart" => workloads::restart(&ctx).await?,
            "soak" => workloads::soak(&ctx).await?,
            "planning" => {
                // The DSS-only busy-area figure of this run is the ratio's baseline.
                let dss_only = workloads::busy_area(&ctx, false).await?;
                let mut r = planning::planning(&ctx, false).await?;
                r.baseline_writes_per_s = dss_only.successful_writes_per_s;
                r.notes.push(format!(
                    "{:.2}x the DSS-only busy-area successful writes/s measured in this run ({:.0}/s); each plan is a survey, peer details, a DSS write and notifications",
                    r.successful_writes_per_s / dss_only.successful_writes_per_s.max(1e-9),
                    dss_only.successful_writes_per_s
                ));
                r.print();
                reports.push(r);
                // Once more with slow peers: plans that never wait on one must not slow down.
                let mut slow = planning::planning(&ctx, true).await?;
                slow.baseline_writes_per_s = dss_only.successful_writes_per_s;
                slow
            }
            "telemetry" => telemetry::telemetry(&ctx).await?,
            "national" => national::national(&ctx, ctx.config.national_scale, ctx.config.national_hour_s).await?,
            "rid-display" => rid_display::rid_display(&ctx).await?,
            "rid" => {
                // Several reports (two scales, three phases each), printed as they come.
                reports.extend(rid::rid(&ctx).await?);
                continue;
            }
            other => bail!(
                "unknown workload `{other}` (busy-area, city, subscriptions, restart, soak, planning, rid, telemetry, rid-display, national)"
            ),
        };
        report.print();
        reports.push(report);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(reports)
}
