//! Authentication (401) and authorization (403) over HTTP.

use crate::harness::*;

#[tokio::test]
async fn bad_tokens_get_401_and_missing_scopes_403() {
    let dss = Dss::start();
    let url = dss.url(&format!("{OIR}/{}", new_id()));
    let body = intent_body(vec![square(0.0, 100.0, 0.0, 100.0, 60, 600)], &[], "Accepted");
    let none_alg = {
        use base64_like::encode;
        format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(br#"{"sub":"x","aud":"localhost","scope":"utm.strategic_coordination","exp":9999999999}"#)
        )
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not-a-jwt".into())),
        ("alg none", Some(none_alg)),
        ("untrusted key", Some(token_with("alpha", &[SC], "localhost", 3600, "untrusted-private.pem"))),
        ("expired", Some(token_with("alpha", &[SC], "localhost", -120, "rs256-private.pem"))),
        ("wrong audience", Some(token_with("alpha", &[SC], "elsewhere.example", 3600, "rs256-private.pem"))),
    ];
    for (what, tok) in cases {
        let (s, b) = call("PUT", &url, tok.as_deref(), Some(&body)).await;
        assert_error_shape(s, &b, 401, what);
    }
    // Both accepted algorithms and both configured audiences work.
    for (key, aud) in [("rs256-private.pem", "localhost"), ("es256-private.pem", "dss.example.org")] {
        let tok = token_with("alpha", &[SC], aud, 3600, key);
        let (s, b) = call("GET", &dss.url(&format!("{OIR}/{}", new_id())), Some(&tok), None).await;
        assert_error_shape(s, &b, 404, key);
    }
    // A valid token lacking the scope is 403, before the body is even read.
    let tok = token("alpha", &[CP]);
    let (s, b) = call("PUT", &url, Some(&tok), Some(&body)).await;
    assert_error_shape(s, &b, 403, "wrong scope");
    let (s, b) = call("PUT", &url, Some(&tok), None).await;
    assert_error_shape(s, &b, 403, "wrong scope, no body");
    let (s, b) = call("GET", &dss.url("/dss/v1/uss_availability/alpha"), Some(&token("alpha", &[CM])), None).await;
    assert_error_shape(s, &b, 403, "availability read scope");
}

/// Minimal unpadded base64url, to forge an unsigned token without another dependency.
mod base64_like {
    pub fn encode(bytes: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..chunk.len() + 1 {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

#[test]
fn refuses_to_start_without_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .args(["dss", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--jwt-public-key") && err.contains("--insecure-dev-auth"), "{err}");
}

#[tokio::test]
async fn insecure_dev_auth_accepts_deconflict_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dss = Dss::start_in(&dir.path().join("d"), &["--insecure-dev-auth"]);
    let out = std::process::Command::new(BIN)
        .args(["token", "--sub", "uss1", "--scope", SC, "--audience", "localhost"])
        .output()
        .expect("token");
    assert!(out.status.success());
    let tok = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let q = serde_json::json!({"area_of_interest": square(0.0, 100.0, 0.0, 100.0, 0, 60)});
    let (s, b) = call("POST", &dss.url(&format!("{OIR}/query")), Some(&tok), Some(&q)).await;
    assert_eq!(s, 200, "{b}");
}

/// Tokens not valid yet, issued in the future or living longer than the maximum get 401; the
/// maximum is configurable.
#[tokio::test]
async fn token_times_and_lifetimes_are_enforced() {
    let dss = Dss::start();
    let url = dss.url(&format!("{OIR}/{}", new_id()));
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"sub": "alpha", "aud": "localhost", "scope": SC, "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    for (what, extra, needle) in [
        ("nbf in the future", serde_json::json!({"nbf": now + 300}), "not valid yet"),
        ("iat in the future", serde_json::json!({"iat": now + 300, "exp": now + 900}), "future"),
        ("two-hour lifetime", serde_json::json!({"exp": now + 7200}), "at most 3600"),
    ] {
        let (s, b) = call("GET", &url, Some(&token_claims(&claims(extra))), None).await;
        assert_error_shape(s, &b, 401, what);
        assert!(b["message"].as_str().is_some_and(|m| m.contains(needle)), "{what}: {b}");
    }
    // A valid token reaches the handler (404: no such intent).
    let (s, _) = call("GET", &url, Some(&token_claims(&claims(serde_json::json!({})))), None).await;
    assert_eq!(s, 404);
    // --max-token-lifetime-secs raises the bound.
    let tmp = tempfile::tempdir().expect("tempdir");
    let lenient = Dss::start_in(&tmp.path().join("data"), &["--max-token-lifetime-secs", "7200"]);
    let long = token_claims(&claims(serde_json::json!({"exp": now + 7200})));
    let (s, _) = call("GET", &lenient.url(&format!("{OIR}/{}", new_id())), Some(&long), None).await;
    assert_eq!(s, 404, "a two-hour token is accepted with a two-hour maximum");
}

/// `dss` configured by a TOML file and the environment (no flags but --config): development
/// mode accepts the audience a local participant asks for (`127.0.0.1`), and a refused
/// audience is named with the accepted ones.
#[tokio::test]
async fn configuration_from_a_file_and_the_environment() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dss.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &file,
        format!(
            "# a development DSS\n[dss]\nlisten = \"127.0.0.1:0\"\ndata-dir = {:?}\ninsecure-dev-auth = true\n",
            data.to_str().expect("path")
        ),
    )
    .expect("write");
    let mut child = std::process::Command::new(BIN)
        .args(["dss", "--config"])
        .arg(&file)
        .env("DECONFLICT_MAX_TOKEN_LIFETIME_SECS", "600")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("line");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let base = line.trim().split(" listening on ").nth(1).unwrap_or_else(|| panic!("did not start: {line}")).to_owned();
    assert!(data.exists(), "the file's data-dir is used");
    let token = |aud: &str, ttl: &str| {
        let out = std::process::Command::new(BIN)
            .args(["token", "--sub", "uss1", "--scope", SC, "--audience", aud, "--ttl-secs", ttl])
            .output()
            .expect("token");
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    };
    let q = serde_json::json!({"area_of_interest": square(0.0, 100.0, 0.0, 100.0, 0, 60)});
    let url = format!("{base}{OIR}/query");
    let (s, b) = call("POST", &url, Some(&token("127.0.0.1", "300")), Some(&q)).await;
    assert_eq!(s, 200, "development mode accepts 127.0.0.1: {b}");
    let (s, b) = call("POST", &url, Some(&token("elsewhere.example", "300")), Some(&q)).await;
    assert_error_shape(s, &b, 401, "another audience");
    let m = b["message"].as_str().unwrap_or_default();
    assert!(m.contains("`elsewhere.example`") && m.contains("localhost, 127.0.0.1"), "{m}");
    // The environment's lifetime limit applies.
    let (s, b) = call("POST", &url, Some(&token("localhost", "3600")), Some(&q)).await;
    assert_error_shape(s, &b, 401, "a one-hour token");
    assert!(b["message"].as_str().is_some_and(|m| m.contains("at most 600")), "{b}");
}
