//! `deconflict pool`: a pool of DSS instances on one machine, for trying it out: a local etcd
//! cluster (the system's `etcd` binary, free loopback ports) and one DSS per member, each
//! talking to its own member first. Everything stops on Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct PoolOptions {
    pub members: usize,
    pub dir: Option<PathBuf>,
    pub jwt_public_keys: Vec<PathBuf>,
    pub jwt_audiences: Vec<String>,
}

/// Starts an etcd cluster of `n` members in `dir`; returns the processes and client URLs.
fn start_etcd(n: usize, dir: &Path) -> Result<(Vec<Proc>, Vec<String>)> {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<_>>()?;
    let cluster: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.join(format!("etcd-{i}"));
        let log = std::fs::File::create(dir.join(format!("etcd-{i}.log")))?;
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "deconflict-pool", "--max-txn-ops", "10000"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting etcd: install Debian's etcd-server (apt-get install etcd-server)")?;
        procs.push(Proc(child));
        urls.push(url);
    }
    Ok((procs, urls))
}

async fn wait_healthy(urls: &[String]) -> Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    for url in urls {
        let mut ok = false;
        for _ in 0..150 {
            if http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ok {
            bail!("etcd member {url} did not become healthy");
        }
    }
    Ok(())
}

pub fn run(opts: PoolOptions) -> Result<()> {
    if opts.members == 0 {
        bail!("--members must be at least 1");
    }
    let tmp = tempfile::tempdir()?;
    let dir = opts.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (_etcd, urls) = start_etcd(opts.members, &dir)?;
    runtime.block_on(wait_healthy(&urls))?;
    let exe = std::env::current_exe()?;
    let mut instances = Vec::new();
    let mut dss_urls = Vec::new();
    for i in 0..opts.members {
        // Its own member first; the others if that one fails.
        let mut endpoints = vec![urls[i].clone()];
        endpoints.extend(urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.clone()));
        let mut cmd = Command::new(&exe);
        cmd.args(["dss", "--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints", &endpoints.join(",")])
            .arg("--data-dir")
            .arg(dir.join(format!("dss-{i}")));
        if opts.jwt_public_keys.is_empty() {
            cmd.arg("--insecure-dev-auth");
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
    runtime.block_on(crate::shutdown_signal());
    drop(instances);
    Ok(())
}
