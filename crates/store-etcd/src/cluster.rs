//! A local etcd cluster of the system's `etcd` binary on free loopback ports, for trying a pool
//! on one machine (`deconflict pool`), the benchmark and tests. Members are stopped when the
//! cluster is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Running members; each killed when this is dropped.
pub struct LocalCluster {
    children: Vec<Child>,
    /// Client URLs, one per member.
    pub client_urls: Vec<String>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalCluster {
    /// Starts `n` members with data and logs in `dir` and waits until each is healthy.
    pub async fn start(n: usize, dir: &Path) -> Result<LocalCluster, String> {
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<std::io::Result<_>>()
            .map_err(|e| e.to_string())?;
        let cluster: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}")).collect();
        let mut me = LocalCluster { children: Vec::new(), client_urls: Vec::new() };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let log = std::fs::File::create(dir.join(format!("etcd-{i}.log"))).map_err(|e| e.to_string())?;
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(dir.join(format!("etcd-{i}")))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "deconflict-pool", "--max-txn-ops", "10000"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| {
                    format!("starting etcd ({e}): install Debian's etcd-server (apt-get install etcd-server)")
                })?;
            me.children.push(child);
            me.client_urls.push(url);
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| e.to_string())?;
        for url in &me.client_urls {
            let mut ok = false;
            for _ in 0..150 {
                if http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ok {
                return Err(format!("etcd member {url} did not become healthy (see {})", dir.display()));
            }
        }
        Ok(me)
    }

    /// Endpoints for the DSS instance of member `i`: its own member first, then the others.
    pub fn endpoints_for(&self, i: usize) -> Vec<String> {
        let mut out = vec![self.client_urls[i].clone()];
        out.extend(self.client_urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.clone()));
        out
    }
}
