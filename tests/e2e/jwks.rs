//! Keys from an identity provider's JWKS (`--jwks-url`): fetched at start, and again when the
//! provider rotates its key and a token names the new key id; the dropped key stops verifying.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{call, square, BIN};

const OIR: &str = "/dss/v1/operational_intent_references";

struct Key {
    jwk: Value,
    pem: String,
    kid: String,
}

fn ec_key(kid: &str) -> Key {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
                     "kid": kid, "use": "sig", "alg": "ES256"});
    Key { jwk, pem: pair.serialize_pem(), kid: kid.to_owned() }
}

fn token(key: &Key) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": "uss1", "aud": "localhost", "scope": "utm.strategic_coordination",
                        "iat": now, "exp": now + 300});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    let signing = jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &signing).expect("sign")
}

#[tokio::test]
async fn a_rotated_identity_provider_key_is_picked_up_without_a_restart() {
    // The identity provider: a JWKS document that the test rotates, and a count of fetches.
    let (k1, k2) = (ec_key("2026-12-k1"), ec_key("2026-12-k2"));
    let published = Arc::new(Mutex::new(json!({"keys": [k1.jwk.clone()]})));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let (published, fetches) = (published.clone(), fetches.clone());
        axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (published, fetches) = (published.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let doc = published.lock().expect("lock").clone();
                    axum::Json(doc)
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let idp = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(BIN)
        .args(["dss", "--listen", "127.0.0.1:0", "--jwks-url", &idp, "--jwks-min-interval-secs", "1", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line))
        .await
        .expect("started in time")
        .expect("line");
    let base = line.trim().split(" listening on ").nth(1).unwrap_or_else(|| panic!("did not start: {line}")).to_owned();
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) >= 1, "fetched at start");

    let q = json!({"area_of_interest": square(0.0, 100.0, 0.0, 100.0, 0, 60)});
    let url = format!("{base}{OIR}/query");
    let (s, b) = call("POST", &url, Some(&token(&k1)), Some(&q)).await;
    assert_eq!(s, 200, "the provider's key verifies: {b}");

    // The provider rotates to k2 and drops k1.
    *published.lock().expect("lock") = json!({"keys": [k2.jwk.clone()]});
    let t2 = token(&k2);
    let (s, b) = call("POST", &url, Some(&t2), Some(&q)).await;
    assert_eq!(s, 401, "not known yet: {b}");
    assert!(b["message"].as_str().is_some_and(|m| m.contains("2026-12-k2") && m.contains("retry")), "{b}");
    // The unknown kid made the DSS fetch the set again: the same token now verifies.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, b) = call("POST", &url, Some(&t2), Some(&q)).await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated key was not fetched: {s} {b}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (s, b) = call("POST", &url, Some(&token(&k1)), Some(&q)).await;
    assert_eq!(s, 401, "the dropped key no longer verifies: {b}");

    // A flood of made-up key ids costs at most one fetch per interval, not one per token.
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..50 {
        let fake = Key { kid: format!("made-up-{i}"), ..ec_key("x") };
        let (s, _) = call("POST", &url, Some(&token(&fake)), Some(&q)).await;
        assert_eq!(s, 401);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(after - before <= 3, "{} fetches for 50 unknown key ids", after - before);
    let _ = child.kill().await;
    server.abort();
}

#[test]
fn an_unreadable_key_set_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .args(["dss", "--listen", "127.0.0.1:0", "--jwks-url", "http://127.0.0.1:9/jwks.json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--jwks-url http://127.0.0.1:9/jwks.json") && err.contains("onnect"), "{err}");
}
