//! Keeping the keys of identity providers current (`--jwks-url`).
//!
//! Each URL's JSON Web Key Set is fetched at start (a provider that cannot be read then stops
//! the start, naming it), again every `refresh`, and as soon as a token names a key id no set
//! holds (a rotation), but never more often than once per `min_interval`, so a flood of tokens
//! with made-up key ids costs one fetch per interval, not one per token. A fetch that fails
//! keeps the keys of the last good one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::JwksKeys;

/// Largest key set read.
const MAX_JWKS_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct JwksOptions {
    pub urls: Vec<String>,
    /// Between two routine refreshes.
    pub refresh: Duration,
    /// Least time between two fetches of one URL asked for by unknown key ids.
    pub min_interval: Duration,
}

/// Fetches one key set into `keys`.
pub async fn fetch(http: &reqwest::Client, url: &str, keys: &JwksKeys) -> Result<usize, String> {
    let work = async {
        let mut resp = http.get(url).send().await.map_err(|e| format!("{url}: {}", crate::tls::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered HTTP {}", resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {}", crate::tls::error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("{url}: the key set is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        keys.replace(url, &body)
    };
    tokio::time::timeout(Duration::from_secs(10), work).await.map_err(|_| format!("{url}: no answer within 10 s"))?
}

/// Fetches every URL into every verifier's keys; the first failure is the error.
pub async fn fetch_all(http: &reqwest::Client, urls: &[String], keys: &[Arc<JwksKeys>]) -> Result<usize, String> {
    let mut total = 0;
    for url in urls {
        for k in keys {
            total = fetch(http, url, k).await?;
        }
        if total == 0 {
            return Err(format!("{url} publishes no RSA or EC signing key"));
        }
    }
    Ok(total)
}

/// Refreshes the key sets for as long as the process runs.
pub async fn keep_current(http: reqwest::Client, keys: Vec<Arc<JwksKeys>>, options: JwksOptions) {
    let mut last_fetch = Instant::now();
    let mut asked = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Every verifier's request is taken (and cleared), not only the first one's.
        for k in &keys {
            asked |= k.take_refresh_request();
        }
        let due = last_fetch.elapsed() >= options.refresh;
        if !(due || asked && last_fetch.elapsed() >= options.min_interval) {
            continue;
        }
        let why = if due { "routine" } else { "a token named an unknown key id" };
        (asked, last_fetch) = (false, Instant::now());
        for url in &options.urls {
            for k in &keys {
                match fetch(&http, url, k).await {
                    Ok(n) => tracing::info!(%url, keys = n, why, "key set fetched"),
                    Err(e) => tracing::warn!(error = %e, why, "key set not refreshed: keeping the previous keys"),
                }
            }
        }
    }
}
