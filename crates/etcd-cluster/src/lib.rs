//! A local etcd cluster of the system's `etcd` binary on free loopback ports, for trying a pool
//! on one machine (`deconflict pool`), the benchmark and tests. Members are stopped when the
//! cluster is dropped.
//!
//! Members run with `--pre-vote`: a member cut off from the others asks whether it could win
//! before it raises its election term, so when the link heals it does not depose the working
//! leader (without it, a member isolated for 20 s came back with a higher term and stalled the
//! whole pool for ~2.5 s while a new leader was elected).
//!
//! With proxies between the members (`start_with` and a [`PeerDelay`]), a member can also be
//! isolated for tests: [`LocalCluster::isolate`], or the file [`ISOLATE_FILE`] in the cluster's
//! directory holding the member's index. Every peer connection to it (through the proxy in front
//! of it) or from it (naming it as sender, `X-Server-From`) is then dropped, both ways, until the
//! cut is lifted.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Running members; each killed when this is dropped.
pub struct LocalCluster {
    children: Vec<Child>,
    /// Client URLs, one per member.
    pub client_urls: Vec<String>,
    /// The thread running the proxies between members (its own runtime, so that a caller
    /// blocking its own threads never stalls the links), stopped when the cluster is dropped.
    proxies: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    /// The member cut off from the others (only with proxies).
    isolated: Isolated,
}

/// A file in the cluster's directory: while it holds a member's index, that member is cut off
/// from the others (see [`LocalCluster::isolate`]).
pub const ISOLATE_FILE: &str = "isolate-member";

/// The member cut off from the others, if any (its index, and its id in hex as etcd sends it),
/// shared by every proxy.
type Isolated = std::sync::Arc<parking_lot::Mutex<Option<(usize, String)>>>;

/// One-way delay injected on every link between members: `mean_ms` +/- `jitter_ms` (uniform),
/// order preserved. There is no netem on the machines this runs on, so the delay is a userspace
/// TCP proxy in front of each member's peer port.
#[derive(Debug, Clone, Copy)]
pub struct PeerDelay {
    pub mean_ms: f64,
    pub jitter_ms: f64,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((stop, thread)) = self.proxies.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// A peer connection: the member it reaches (by index) and the sender its first request names
/// (`X-Server-From`, hex).
#[derive(Clone)]
struct Link {
    to: usize,
    from: Option<String>,
}

fn sender_of(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("X-Server-From").then(|| v.trim().to_ascii_lowercase())
    })
}

/// Is this link cut now?
fn cut(isolated: &Isolated, link: &Link) -> bool {
    match &*isolated.lock() {
        Some((index, id)) => link.to == *index || link.from.as_deref() == Some(id.as_str()),
        None => false,
    }
}

/// Copies `from` to `to`, delivering each chunk `delay` after it was read (FIFO); stops (the
/// connection drops) while the link is cut.
async fn delayed_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: PeerDelay,
    seed: u64,
    link: Link,
    isolated: Isolated,
    first: Vec<u8>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut state = seed | 1;
    let mut last = tokio::time::Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Some(first).filter(|f| !f.is_empty());
    loop {
        let n = match pending.take() {
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                f.len()
            }
            None => match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        if cut(&isolated, &link) {
            break;
        }
        // xorshift: a uniform sample in [-1, 1) for the jitter.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let ms = (delay.mean_ms + u * delay.jitter_ms).max(0.0);
        let at = (tokio::time::Instant::now() + Duration::from_secs_f64(ms / 1000.0)).max(last);
        last = at;
        if tx.send((at, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Listens on `listen` and forwards every connection to `target` with `delay` each way,
/// dropping it while it links the isolated member.
async fn delaying_proxy(
    listener: tokio::net::TcpListener,
    target: u16,
    target_index: usize,
    delay: PeerDelay,
    isolated: Isolated,
) {
    use tokio::io::AsyncReadExt;
    let mut k = 0u64;
    while let Ok((mut inbound, _)) = listener.accept().await {
        k += 1;
        // The first request's head names the sender and the recipient.
        let mut first = vec![0u8; 16 * 1024];
        let n = match tokio::time::timeout(Duration::from_secs(5), inbound.read(&mut first)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => continue,
        };
        first.truncate(n);
        let link = Link { to: target_index, from: sender_of(&first) };
        if cut(&isolated, &link) {
            continue;
        }
        let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (ir, iw) = inbound.into_split();
        let (or, ow) = outbound.into_split();
        tokio::spawn(delayed_pump(ir, ow, delay, k * 2, link.clone(), isolated.clone(), first));
        tokio::spawn(delayed_pump(or, iw, delay, k * 2 + 1, link, isolated.clone(), Vec::new()));
    }
}

/// The member id (hex, as etcd sends it in `X-Server-From`) of the member at `client_url`.
async fn member_id_hex(client_url: &str) -> Result<String, String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| e.to_string())?;
    let status: serde_json::Value = http
        .post(format!("{client_url}/v3/maintenance/status"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id: u64 = status["header"]["member_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no member id in {status}"))?;
    Ok(format!("{id:x}"))
}

/// Follows changes of [`ISOLATE_FILE`] in `dir` (checked every 100 ms) into `isolated`.
async fn watch_isolate_file(dir: std::path::PathBuf, client_urls: Vec<String>, isolated: Isolated) {
    let mut seen: Option<usize> = None;
    loop {
        let wanted = std::fs::read_to_string(dir.join(ISOLATE_FILE)).ok().and_then(|s| s.trim().parse::<usize>().ok());
        if wanted != seen {
            match wanted {
                None => *isolated.lock() = None,
                Some(i) => match client_urls.get(i) {
                    Some(url) => match member_id_hex(url).await {
                        Ok(id) => *isolated.lock() = Some((i, id)),
                        Err(e) => tracing::warn!(member = i, error = %e, "cannot isolate: no member id"),
                    },
                    None => tracing::warn!(member = i, "cannot isolate: no such member"),
                },
            }
            seen = wanted;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many times a cluster whose member exited while starting is started again.
const START_ATTEMPTS: u32 = 3;

/// Why a start failed: a member exited (perhaps a port was taken), or anything else.
enum Start {
    Exited(String),
    Failed(String),
}

/// The last `n` lines of a log file, or a word on why it cannot be read.
fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalCluster {
    /// Starts `n` members with data and logs in `dir` and waits until each is healthy.
    pub async fn start(n: usize, dir: &Path) -> Result<LocalCluster, String> {
        Self::start_with(n, dir, None).await
    }

    /// [`Self::start`], with `delay` injected on every link between members when given.
    ///
    /// Ports are picked free and released before etcd binds them, so another process (a test
    /// or a cluster started alongside) may take one first: a member that exits while starting
    /// is taken for that, and the whole cluster is started again on fresh ports, at most
    /// [`START_ATTEMPTS`] times.
    pub async fn start_with(n: usize, dir: &Path, delay: Option<PeerDelay>) -> Result<LocalCluster, String> {
        let mut attempt = 1;
        loop {
            let ports = (0..n)
                .map(|_| Ok((free_port()?, free_port()?)))
                .collect::<std::io::Result<_>>()
                .map_err(|e| e.to_string())?;
            match Self::start_once(dir, delay, ports).await {
                Err(Start::Exited(why)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, %why, "an etcd member exited while starting; starting again on fresh ports");
                    attempt += 1;
                }
                Err(Start::Exited(why) | Start::Failed(why)) => return Err(why),
                Ok(cluster) => return Ok(cluster),
            }
        }
    }

    /// One start on `ports` (client, peer), a pair per member.
    async fn start_once(dir: &Path, delay: Option<PeerDelay>, ports: Vec<(u16, u16)>) -> Result<LocalCluster, Start> {
        Self::spawn(dir, delay, &ports).map_err(Start::Failed)?.wait_healthy(dir).await
    }

    /// Starts the members (and the proxies between them) without waiting for them.
    fn spawn(dir: &Path, delay: Option<PeerDelay>, ports: &[(u16, u16)]) -> Result<LocalCluster, String> {
        let mut me = LocalCluster {
            children: Vec::new(),
            client_urls: Vec::new(),
            proxies: None,
            isolated: Isolated::default(),
        };
        // Members advertise the proxy in front of their peer port: every link between two
        // members then crosses a proxy.
        let mut advertised = Vec::new();
        let mut listeners = Vec::new();
        for (index, (_, peer)) in ports.iter().enumerate() {
            match delay {
                Some(_) => {
                    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
                    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                    listeners.push((listener, *peer, index));
                    advertised.push(format!("http://127.0.0.1:{port}"));
                }
                None => advertised.push(format!("http://127.0.0.1:{peer}")),
            }
        }
        if let Some(d) = delay {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let isolated = me.isolated.clone();
            let watched = dir.to_path_buf();
            let client_urls: Vec<String> = ports.iter().map(|(c, _)| format!("http://127.0.0.1:{c}")).collect();
            let thread = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                rt.block_on(async move {
                    for (listener, peer, index) in listeners {
                        if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                            tokio::spawn(delaying_proxy(l, peer, index, d, isolated.clone()));
                        }
                    }
                    if std::fs::metadata(watched.join(ISOLATE_FILE)).is_ok() {
                        let _ = std::fs::remove_file(watched.join(ISOLATE_FILE));
                    }
                    tokio::spawn(watch_isolate_file(watched, client_urls, isolated));
                    let _ = stopped.await;
                });
            });
            me.proxies = Some((stop, thread));
        }
        let token = format!("deconflict-pool-{}", uuid::Uuid::new_v4().simple());
        let cluster: Vec<String> = advertised.iter().enumerate().map(|(i, u)| format!("m{i}={u}")).collect();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let url = format!("http://127.0.0.1:{client}");
            let listen_peer = format!("http://127.0.0.1:{peer}");
            let peer_url = advertised[i].clone();
            // A data directory of an earlier attempt names other ports.
            let data = dir.join(format!("etcd-{i}"));
            if data.exists() {
                std::fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            }
            let log = std::fs::File::create(dir.join(format!("etcd-{i}.log"))).map_err(|e| e.to_string())?;
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(dir.join(format!("etcd-{i}")))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &listen_peer, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
                // A token of its own: a member of another local cluster that took a port meant
                // for this one cannot join it.
                .args(["--initial-cluster-token", &token, "--max-txn-ops", "10000", "--pre-vote"])
                // Area keys are rewritten by every commit: without compaction their history
                // grows until etcd's space quota stops all writes. An instance whose watch falls
                // further behind than this reloads everything.
                .args(["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "10m"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| {
                    format!("starting etcd ({e}): install Debian's etcd-server (apt-get install etcd-server)")
                })?;
            me.children.push(child);
            me.client_urls.push(url);
        }
        Ok(me)
    }

    /// Waits (at most about 15 s per member) until every member answers healthy.
    async fn wait_healthy(mut self, dir: &Path) -> Result<LocalCluster, Start> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Start::Failed(e.to_string()))?;
        for i in 0..self.client_urls.len() {
            let url = self.client_urls[i].clone();
            let mut ok = false;
            for _ in 0..150 {
                // Checked first: a port taken by another cluster's member could answer healthy.
                self.none_exited(dir)?;
                if http.get(format!("{url}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !ok {
                return Err(Start::Failed(format!("etcd member {url} did not become healthy (see {})", dir.display())));
            }
        }
        self.none_exited(dir)?;
        Ok(self)
    }

    /// An error naming the first member that has exited, with the end of its log.
    fn none_exited(&mut self, dir: &Path) -> Result<(), Start> {
        match self.children.iter_mut().enumerate().find_map(|(k, c)| Some((k, c.try_wait().ok()??))) {
            None => Ok(()),
            Some((k, status)) => {
                let log = dir.join(format!("etcd-{k}.log"));
                Err(Start::Exited(format!(
                    "etcd member {k} exited while starting ({status}); the end of {}:\n{}",
                    log.display(),
                    log_tail(&log, 5)
                )))
            }
        }
    }

    /// Cuts member `member` off from the others, or lifts the cut (`None`). Only with proxies
    /// between members (`start_with` and a delay); the file [`ISOLATE_FILE`] in the cluster's
    /// directory does the same from outside the process.
    pub async fn isolate(&self, member: Option<usize>) -> Result<(), String> {
        let target = match member {
            None => None,
            Some(i) => {
                let url = self.client_urls.get(i).ok_or_else(|| format!("no member {i}"))?;
                Some((i, member_id_hex(url).await?))
            }
        };
        *self.isolated.lock() = target;
        Ok(())
    }

    /// The process ids of the members, in order (for tests that pause one).
    pub fn member_pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Endpoints for the DSS instance of member `i`: its own member first, then the others.
    pub fn endpoints_for(&self, i: usize) -> Vec<String> {
        let mut out = vec![self.client_urls[i].clone()];
        out.extend(self.client_urls.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, u)| u.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member whose port is taken exits at once; the start says so (with etcd's own words)
    /// instead of waiting out the health timeout, which is what lets `start_with` try again.
    #[tokio::test]
    async fn a_taken_port_is_reported_as_an_exited_member_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = squatter.local_addr().expect("addr").port();
        let t = std::time::Instant::now();
        let ports = vec![(taken, free_port().expect("port"))];
        match LocalCluster::start_once(dir.path(), None, ports).await {
            Err(Start::Exited(why)) => {
                assert!(why.contains("address already in use"), "{why}");
                assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
            }
            Err(Start::Failed(why)) => panic!("expected an exited member, got: {why}"),
            Ok(_) => panic!("a member started on a taken port"),
        }
        // And a start on fresh ports in the same directory works.
        let cluster = LocalCluster::start(1, dir.path()).await.expect("start on fresh ports");
        assert_eq!(cluster.client_urls.len(), 1);
    }
}
