//! Starts the real `deconflict` binary on a free loopback port and talks HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_deconflict");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A running DSS process; killed when dropped.
pub struct Dss {
    pub child: Child,
    pub base: String,
    _tmp: Option<tempfile::TempDir>,
    /// With `DECONFLICT_E2E_STORE=etcd`: the single etcd member the DSS keeps its record in.
    etcd: Option<Child>,
}

/// With `DECONFLICT_E2E_STORE=etcd` every `Dss::start` runs on a fresh single-member etcd, so
/// the same end-to-end tests show a pool instance behaves as the embedded store does.
fn etcd_mode() -> bool {
    std::env::var("DECONFLICT_E2E_STORE").is_ok_and(|v| v == "etcd")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Starts one etcd member in `dir`; returns it and its client URL once it accepts connections.
fn start_etcd(dir: &Path) -> (Child, String) {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut child = Command::new("etcd")
        .args(["--name", "m1", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("m1={peer_url}"), "--max-txn-ops", "10000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("DECONFLICT_E2E_STORE=etcd needs the etcd binary");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
            return (child, url);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("etcd did not start at {url}");
}

impl Dss {
    /// Starts a DSS trusting the RS256 and ES256 fixture keys, audience `localhost`.
    pub fn start() -> Dss {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut dss = Self::start_in(&dir, &[]);
        dss._tmp = Some(tmp);
        dss
    }

    /// Starts a DSS on `data_dir` with extra flags.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Dss {
        Self::start_under(&[], data_dir, extra)
    }

    /// Starts a DSS on `data_dir` with extra flags, run by the command `wrapper` (for example
    /// `prlimit --nofile=128`); an empty wrapper runs the binary directly.
    pub fn start_under(wrapper: &[&str], data_dir: &Path, extra: &[&str]) -> Dss {
        let rs = fixture("rs256-public.pem");
        let es = fixture("es256-public.pem");
        let mut etcd = None;
        let mut store_args: Vec<String> = Vec::new();
        if etcd_mode() {
            std::fs::create_dir_all(data_dir).expect("data dir");
            let (child, url) = start_etcd(data_dir);
            store_args = vec!["--store".into(), "etcd".into(), "--etcd-endpoints".into(), url];
            etcd = Some(child);
        }
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(["dss", "--listen", "127.0.0.1:0", "--allow-http-base-urls", "--data-dir"])
            .arg(data_dir)
            .arg("--jwt-public-key")
            .arg(&rs)
            .arg("--jwt-public-key")
            .arg(&es)
            .args(["--jwt-audience", "localhost", "--jwt-audience", "dss.example.org"])
            .args(&store_args)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("the deconflict binary must start");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let Some(base) = line.trim().strip_prefix("deconflict dss listening on ").map(str::to_owned) else {
            if let Some(mut e) = etcd {
                let _ = e.kill();
                let _ = e.wait();
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("the DSS did not start; it printed `{line}`");
        };
        Dss { child, base, _tmp: None, etcd }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops with SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Dss {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
    }
}

pub const SC: &str = "utm.strategic_coordination";
pub const CM: &str = "utm.constraint_management";
pub const CP: &str = "utm.constraint_processing";
pub const CMSA: &str = "utm.conformance_monitoring_sa";
pub const AA: &str = "utm.availability_arbitration";

/// A token signed with the RS256 fixture key.
pub fn token(sub: &str, scopes: &[&str]) -> String {
    token_with(sub, scopes, "localhost", 3600, "rs256-private.pem")
}

pub fn token_with(sub: &str, scopes: &[&str], aud: &str, ttl: i64, key_file: &str) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("key fixture");
    let (key, alg) = match EncodingKey::from_ec_pem(&pem) {
        Ok(k) => (k, Algorithm::ES256),
        Err(_) => (EncodingKey::from_rsa_pem(&pem).expect("rsa key"), Algorithm::RS256),
    };
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"iss": "test", "sub": sub, "aud": aud, "scope": scopes.join(" "), "exp": now + ttl, "iat": now});
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("sign")
}

/// A token with exactly these claims, signed with the RS256 fixture key.
pub fn token_claims(claims: &Value) -> String {
    let pem = std::fs::read(fixture("rs256-private.pem")).expect("key fixture");
    let key = EncodingKey::from_rsa_pem(&pem).expect("rsa key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// Sends a request; returns status and JSON body (Null when the body is not JSON).
pub async fn call(method: &str, url: &str, tok: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let c = client();
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = c.request(m, url);
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// [`call`], waiting out a 429 (the DSS's per-subject rate limit) as its `Retry-After` asks, a
/// bounded number of times: for tests that stream or verify more requests than the default
/// limit allows and test something else than the limit itself.
pub async fn call_patiently(method: &str, url: &str, tok: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let mut answer = call(method, url, tok, body).await;
    for _ in 0..20 {
        if answer.0 != 429 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        answer = call(method, url, tok, body).await;
    }
    answer
}

pub fn rfc3339(offset_s: i64) -> Value {
    let t = chrono::Utc::now() + chrono::Duration::seconds(offset_s);
    json!({"value": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "format": "RFC3339"})
}

fn alt(v: f64) -> Value {
    json!({"value": v, "reference": "W84", "units": "M"})
}

/// A square footprint volume: `side_m` metres wide, its south-west corner `east_m` metres east
/// of (47°N, 8°E), from `t0` to `t1` seconds from now.
pub fn square(east_m: f64, side_m: f64, alt_lo: f64, alt_hi: f64, t0: i64, t1: i64) -> Value {
    let dlng = 1.0 / (111_320.0 * 47f64.to_radians().cos());
    let dlat = 1.0 / 111_200.0;
    let x0 = 8.0 + east_m * dlng;
    let x1 = x0 + side_m * dlng;
    let (y0, y1) = (47.0, 47.0 + side_m * dlat);
    json!({
        "volume": {
            "outline_polygon": {"vertices": [
                {"lat": y0, "lng": x0}, {"lat": y0, "lng": x1}, {"lat": y1, "lng": x1}, {"lat": y1, "lng": x0}
            ]},
            "altitude_lower": alt(alt_lo), "altitude_upper": alt(alt_hi)
        },
        "time_start": rfc3339(t0), "time_end": rfc3339(t1)
    })
}

pub fn circle(lat: f64, lng: f64, radius_m: f64, t0: i64, t1: i64) -> Value {
    json!({
        "volume": {
            "outline_circle": {"center": {"lat": lat, "lng": lng}, "radius": {"value": radius_m, "units": "M"}},
            "altitude_lower": alt(0.0), "altitude_upper": alt(120.0)
        },
        "time_start": rfc3339(t0), "time_end": rfc3339(t1)
    })
}

pub fn intent_body(extents: Vec<Value>, key: &[String], state: &str) -> Value {
    json!({
        "extents": extents,
        "key": key,
        "state": state,
        "uss_base_url": "http://uss.test/utm",
        "new_subscription": {"uss_base_url": "http://uss.test/utm", "notify_for_constraints": false},
        "request_id": "ignored-by-spec"
    })
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub const OIR: &str = "/dss/v1/operational_intent_references";
pub const CR: &str = "/dss/v1/constraint_references";
pub const SUBS: &str = "/dss/v1/subscriptions";

/// Creates an intent and returns (id, ovn, full response).
pub async fn create_intent(dss: &Dss, tok: &str, body: &Value) -> (String, String, Value) {
    let id = new_id();
    let (status, resp) = call("PUT", &dss.url(&format!("{OIR}/{id}")), Some(tok), Some(body)).await;
    assert_eq!(status, 201, "create failed: {resp}");
    let ovn = resp["operational_intent_reference"]["ovn"].as_str().expect("own ovn").to_owned();
    (id, ovn, resp)
}

/// Asserts the spec's `ErrorResponse` shape: a JSON object with a non-empty message.
pub fn assert_error_shape(status: u16, body: &Value, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: expected {expected}, got {status} with {body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "{what}: error body must carry a message, got {body}");
}

/// A small tmpfs mounted for one test, unmounted when dropped. Needs root, as CI has.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (run as root, as CI does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
