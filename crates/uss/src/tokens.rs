//! OAuth 2.0 client credentials against the configured token endpoint, with a cache per
//! audience until shortly before expiry. The request is the one the open-source DSS's
//! development token server takes (`GET ?grant_type=client_credentials&sub=&scope=&
//! intended_audience=`), so ecosystem token servers work too.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Deserialize;

/// Seconds before expiry at which a cached token is replaced.
const REFRESH_MARGIN_S: i64 = 60;

pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Option<String>,
    scopes: Vec<String>,
    cache: Mutex<HashMap<String, (String, i64)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct ExpClaim {
    exp: i64,
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The audience ecosystem clients use: the host name of the URL, without scheme or port.
pub fn audience_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_owned();
    }
    host_port.split(':').next().unwrap_or(host_port).to_owned()
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        token_url: String,
        client_id: String,
        client_secret: Option<String>,
        scopes: Vec<String>,
    ) -> Self {
        Self { http, token_url, client_id, client_secret, scopes, cache: Mutex::new(HashMap::new()) }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A bearer token for calling `url`.
    pub async fn token_for(&self, url: &str) -> Result<String, String> {
        let aud = audience_of(url);
        if let Some((tok, exp)) = self.cache.lock().get(&aud) {
            if *exp - REFRESH_MARGIN_S > now_s() {
                return Ok(tok.clone());
            }
        }
        let scope = self.scopes.join(" ");
        let mut query = vec![
            ("grant_type", "client_credentials"),
            ("sub", self.client_id.as_str()),
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
            ("intended_audience", aud.as_str()),
            ("issuer", "deconflict-uss"),
        ];
        if let Some(secret) = &self.client_secret {
            query.push(("client_secret", secret.as_str()));
        }
        let resp =
            self.http.get(&self.token_url).query(&query).send().await.map_err(|e| {
                format!("token endpoint {} unreachable: {}", self.token_url, client::tls::error_chain(&e))
            })?;
        if !resp.status().is_success() {
            return Err(format!("token endpoint answered {}", resp.status()));
        }
        let body: TokenResponse = resp.json().await.map_err(|e| format!("token endpoint response: {e}"))?;
        let exp = jwt_exp(&body.access_token).unwrap_or(now_s() + 300);
        self.cache.lock().insert(aud, (body.access_token.clone(), exp));
        Ok(body.access_token)
    }
}

/// The `exp` claim of a token we were just issued (not verified: we only schedule a refresh).
fn jwt_exp(token: &str) -> Option<i64> {
    jsonwebtoken::dangerous::insecure_decode::<ExpClaim>(token).ok().map(|d| d.claims.exp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn audience_is_the_host_without_port() {
        assert_eq!(super::audience_of("http://localhost:8082/dss"), "localhost");
        assert_eq!(super::audience_of("https://dss.example.com:8888/rid/v2"), "dss.example.com");
        assert_eq!(super::audience_of("http://[::1]:9000"), "::1");
    }
}
