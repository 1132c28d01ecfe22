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
    /// Identity providers' key sets (`dss --jwks-url`).
    pub jwks_urls: Vec<String>,
    /// CAs trusted when calling out (`dss --ca-cert`).
    pub ca_certs: Vec<PathBuf>,
    /// Where the instances send traces (`--otlp-endpoint`).
    pub otlp_endpoint: Option<String>,
    pub jwt_audiences: Vec<String>,
    /// Instances serve reads under read leases (`dss --etcd-read-leases`).
    pub read_leases: bool,
    /// Testing only: a proxy on every link between members, so a member can be isolated by
    /// writing its id to `DIR/isolate-member` (`etcd_cluster::ISOLATE_FILE`).
    pub peer_proxies: bool,
}

/// The `dss` command line of one instance on etcd `endpoints`, with its data in `data`.
fn instance_args(opts: &PoolOptions, endpoints: &[String], data: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        ["dss", "--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints"].iter().map(Into::into).collect();
    args.push(endpoints.join(",").into());
    // A local pool for development and tests: its participants are on plain HTTP.
    args.push("--allow-http-base-urls".into());
    args.push("--data-dir".into());
    args.push(data.into());
    if opts.jwt_public_keys.is_empty() && opts.jwks_urls.is_empty() {
        args.push("--insecure-dev-auth".into());
    }
    if opts.read_leases {
        args.push("--etcd-read-leases".into());
    }
    let repeated = [
        ("--jwt-public-key", opts.jwt_public_keys.iter().map(|p| p.as_os_str().to_owned()).collect::<Vec<_>>()),
        ("--jwks-url", opts.jwks_urls.iter().map(Into::into).collect()),
        ("--ca-cert", opts.ca_certs.iter().map(|p| p.as_os_str().to_owned()).collect()),
        ("--jwt-audience", opts.jwt_audiences.iter().map(Into::into).collect()),
        ("--otlp-endpoint", opts.otlp_endpoint.iter().map(Into::into).collect()),
    ];
    for (flag, values) in repeated {
        for v in values {
            args.push(flag.into());
            args.push(v);
        }
    }
    args
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
        cmd.args(instance_args(&opts, &endpoints, &dir.join(format!("dss-{i}"))));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_get_the_pools_identity_providers_trust_and_collector() {
        let opts = PoolOptions {
            members: 3,
            dir: None,
            jwt_public_keys: vec![],
            jwks_urls: vec!["https://idp.example/jwks".into()],
            ca_certs: vec![PathBuf::from("/etc/ca.pem")],
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            jwt_audiences: vec!["dss.example".into()],
            read_leases: true,
            peer_proxies: false,
        };
        let args: Vec<String> =
            instance_args(&opts, &["http://127.0.0.1:2379".into()], std::path::Path::new("/d/dss-0"))
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
        let line = args.join(" ");
        for part in [
            "--etcd-endpoints http://127.0.0.1:2379",
            "--data-dir /d/dss-0",
            "--etcd-read-leases",
            "--jwks-url https://idp.example/jwks",
            "--ca-cert /etc/ca.pem",
            "--jwt-audience dss.example",
            "--otlp-endpoint http://127.0.0.1:4318",
        ] {
            assert!(line.contains(part), "{part} missing: {line}");
        }
        assert!(!line.contains("--insecure-dev-auth"), "a key set replaces the development key: {line}");
        let dev = PoolOptions { jwks_urls: vec![], ..opts };
        let line = instance_args(&dev, &[], std::path::Path::new("/d")).join(std::ffi::OsStr::new(" "));
        assert!(line.to_string_lossy().contains("--insecure-dev-auth"));
    }
}
