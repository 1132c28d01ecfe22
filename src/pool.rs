//! `deconflict pool`: a pool of DSS instances on one machine, for trying it out: a local etcd
//! cluster (the system's `etcd` binary, free loopback ports) and one DSS per member, each
//! talking to its own member first. Everything stops on Ctrl-C.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct PoolOptions {
    pub members: usize,
    pub dir: Option<PathBuf>,
    pub jwt_public_keys: Vec<PathBuf>,
    pub jwt_audiences: Vec<String>,
    /// Instances serve reads under read leases (`dss --etcd-read-leases`).
    pub read_leases: bool,
    /// Testing only: a proxy on every link between members, so a member can be isolated by
    /// writing its id to `DIR/isolate-member` (`etcd_cluster::ISOLATE_FILE`).
    pub peer_proxies: bool,
}

pub fn run(opts: PoolOptions) -> Result<()> {
    if opts.members == 0 {
        bail!("--members must be at least 1");
    }
    let tmp = tempfile::tempdir()?;
    let dir = opts.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let proxies = opts.peer_proxies.then_some(etcd_cluster::PeerDelay { mean_ms: 0.0, jitter_ms: 0.0 });
    let etcd = runtime
        .block_on(etcd_cluster::LocalCluster::start_with(opts.members, &dir, proxies))
        .map_err(anyhow::Error::msg)?;
    let urls = etcd.client_urls.clone();
    let exe = std::env::current_exe()?;
    let mut instances = Vec::new();
    let mut dss_urls = Vec::new();
    for i in 0..opts.members {
        // Its own member first; the others if that one fails.
        let endpoints = etcd.endpoints_for(i);
        let mut cmd = Command::new(&exe);
        cmd.args(["dss", "--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints", &endpoints.join(",")])
            // A local pool for development and tests: its participants are on plain HTTP.
            .arg("--allow-http-base-urls")
            .arg("--data-dir")
            .arg(dir.join(format!("dss-{i}")));
        if opts.jwt_public_keys.is_empty() {
            cmd.arg("--insecure-dev-auth");
        }
        if opts.read_leases {
            cmd.arg("--etcd-read-leases");
        }
        for k in &opts.jwt_public_keys {
            cmd.arg("--jwt-public-key").arg(k);
        }
        for a in &opts.jwt_audiences {
            cmd.args(["--jwt-audience", a]);
        }
        let log = std::fs::File::create(dir.join(format!("dss-{i}.log")))?;
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let Some(url) = line.trim().split(" listening on ").nth(1).map(str::to_owned) else {
            bail!("DSS instance {i} did not start; see {}", dir.join(format!("dss-{i}.log")).display());
        };
        instances.push(Proc(child));
        dss_urls.push(url);
    }
    println!(
        "deconflict pool: {} etcd members and {} DSS instances (data in {})",
        urls.len(),
        dss_urls.len(),
        dir.display()
    );
    for (i, (d, e)) in dss_urls.iter().zip(&urls).enumerate() {
        println!("  instance {i}: DSS {d}  etcd member {e}");
    }
    if opts.jwt_public_keys.is_empty() {
        println!("Tokens (development key, accepted by every instance: local trials only):");
        println!("  deconflict token --sub uss1 --scope utm.strategic_coordination --audience localhost");
    }
    println!("Every instance serves the whole API on the same airspace record. Ctrl-C stops everything.");
    // SIGINT or SIGTERM: the children are stopped on the way out (dropped), never orphaned.
    runtime.block_on(async { crate::shutdown_signal().await });
    drop(instances);
    drop(etcd);
    Ok(())
}
