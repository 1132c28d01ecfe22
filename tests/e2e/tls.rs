//! HTTPS between every party: the DSS and participants serving TLS with certificates made
//! here by a private CA, trusted with --ca-cert; plain http:// base URLs refused unless
//! allowed; a certificate replaced while serving.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::uss::{dev_token, flight, op, spawn_lines, spawn_participant, Participant, FULL};

const DEV_PUBLIC: &str = "src/keys/dev-public.pem";

/// A CA and a server certificate for localhost and 127.0.0.1 it signed, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).expect("leaf certificate");
    let pki = Pki { ca: dir.join(format!("{name}-ca.pem")), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&pki.ca, ca.pem()).expect("write");
    // The key first, then the certificate: a reload never sees a new certificate with an old key
    // for longer than a poll (and a mismatched pair is refused, the old one kept).
    std::fs::write(&pki.key, leaf_key.serialize_pem()).expect("write");
    std::fs::write(&pki.cert, leaf.pem()).expect("write");
    pki
}

fn client_trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read CA");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A participant with the full scopes, `extra` flags and no others (no --allow-http-base-urls).
async fn participant(dir: &Path, name: &str, dss: &str, auth: &str, extra: &[&str]) -> Participant {
    let (child, urls) = spawn_participant(auth, dss, name, &FULL, &dir.join(name), extra);
    let token = dev_token(auth, &format!("{name}-operator"), "deconflict.operator").await;
    Participant { child, url: urls[0].clone(), operator: urls[1].clone(), token }
}

#[tokio::test]
async fn https_between_dss_and_participants_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path(), "first");
    let (cert, key, ca) =
        (pki.cert.to_str().expect("path"), pki.key.to_str().expect("path"), pki.ca.to_str().expect("path"));
    let (auth, auth_urls) = spawn_lines(&["auth", "--listen", "127.0.0.1:0"], 1);
    let _auth = Killed(auth);
    let auth_url = auth_urls[0].clone();
    let pubkey = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEV_PUBLIC);
    let data = dir.path().join("dss");
    // A production-like DSS: real keys, https only.
    let (dss, dss_urls) = spawn_lines(
        &[
            "dss",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("path"),
            "--jwt-public-key",
            pubkey.to_str().expect("path"),
            "--jwt-audience",
            "127.0.0.1",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
        1,
    );
    let dss_pid = dss.id();
    let _dss = Killed(dss);
    let dss_url = dss_urls[0].clone();
    assert!(dss_url.starts_with("https://127.0.0.1:"), "{dss_url}");

    // Participants serving https, trusting the private CA.
    let tls = ["--tls-cert", cert, "--tls-key", key, "--ca-cert", ca];
    let alpha = participant(dir.path(), "alpha", &dss_url, &auth_url, &tls).await;
    let bravo = participant(dir.path(), "bravo", &dss_url, &auth_url, &tls).await;
    assert!(alpha.url.starts_with("https://"), "{}", alpha.url);
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 400.0, 0.0, 120.0, 300, 1500))).await;
    assert_eq!(s, 200, "{a}");
    let a_id = a["operational_intent_id"].as_str().expect("id").to_owned();
    // bravo reads alpha's details over https: a real conflict, not an unverifiable one.
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.003, 8.0, 300.0, 50.0, 150.0, 900, 2100))).await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["conflicts"][0]["kind"], "operational_intent", "{r}");
    assert_eq!(r["conflicts"][0]["id"], a_id.as_str(), "{r}");

    // Without the private CA the DSS cannot be trusted, and the operator is told why.
    let charlie = participant(dir.path(), "charlie", &dss_url, &auth_url, &[]).await;
    let (s, r) = op(&charlie, "POST", "/operator/plan", Some(&flight(46.0, 8.0, 100.0, 0.0, 120.0, 300, 900))).await;
    assert!(s >= 500, "{s} {r}");
    let text = r.to_string();
    assert!(text.contains("certificate") || text.contains("UnknownIssuer"), "the cause is named: {text}");

    // The DSS refuses http:// base URLs: it was not started with --allow-http-base-urls.
    let c = client_trusting(&pki.ca);
    let tok = dev_token(&auth_url, "delta", "utm.strategic_coordination").await;
    let body = json!({"extents": crate::harness::square(0.0, 100.0, 0.0, 100.0, 60, 600),
                      "uss_base_url": "http://delta.example", "notify_for_operational_intents": true});
    let r = c
        .put(format!("{dss_url}/dss/v1/subscriptions/{}", crate::harness::new_id()))
        .bearer_auth(&tok)
        .json(&body)
        .send()
        .await
        .expect("DSS over https");
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("json");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("https") && m.contains("--allow-http-base-urls")), "{v}");

    // A new certificate from another CA, picked up on SIGHUP while serving.
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&second_dir).expect("mkdir");
    let second = make_pki(&second_dir, "second");
    std::fs::copy(&second.key, &pki.key).expect("replace key");
    std::fs::copy(&second.cert, &pki.cert).expect("replace cert");
    let hup = std::process::Command::new("kill").args(["-HUP", &dss_pid.to_string()]).status().expect("kill");
    assert!(hup.success());
    let trusting_second = client_trusting(&second.ca);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match trusting_second.get(format!("{dss_url}/healthy")).send().await {
            Ok(r) if r.status().is_success() => break,
            other => assert!(Instant::now() < deadline, "the new certificate was not served: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let old = client_trusting(&pki.ca).get(format!("{dss_url}/healthy")).send().await;
    assert!(old.is_err(), "the old CA no longer verifies the DSS");
}

#[tokio::test]
async fn a_participant_calls_http_peers_only_when_allowed() {
    let cluster = crate::uss::Cluster::start();
    let alpha = cluster.participant("alpha", &FULL);
    let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight(47.0, 8.0, 400.0, 0.0, 120.0, 300, 1500))).await;
    assert_eq!(s, 200, "{a}");
    // bravo was not told to allow http peers: alpha's details are never fetched in clear.
    let bravo = participant(cluster.dir.path(), "bravo", &cluster.dss.url, &cluster.auth.url, &[]).await;
    let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&flight(47.001, 8.0, 200.0, 0.0, 120.0, 700, 1100))).await;
    assert_eq!(s, 409, "{r}");
    let c = &r["conflicts"][0];
    assert_eq!(c["kind"], "unverifiable", "{r}");
    assert!(c["reason"].as_str().is_some_and(|m| m.contains("https") && m.contains("--allow-http-base-urls")), "{r}");
}
