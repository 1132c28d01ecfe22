//! `deconflict telemetry`: replays a recorded track (one position per line, the shape
//! `POST /operator/intents/{id}/positions` takes) into a participant at the track's own pace,
//! or faster with `--speed`, with its times kept or shifted to now (`--now`), printing a
//! progress line. Positions that come due together go in one request.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One line of a track file, with its time read.
struct Line {
    number: usize,
    at_us: i64,
    body: serde_json::Map<String, Value>,
}

fn read_track(path: &Path) -> Result<Vec<Line>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let number = i + 1;
        let body: serde_json::Map<String, Value> = serde_json::from_str(raw)
            .with_context(|| format!("{}:{number}: not a JSON position object", path.display()))?;
        let time = body
            .get("time")
            .and_then(Value::as_str)
            .with_context(|| format!("{}:{number}: no \"time\" (RFC 3339) in the position", path.display()))?;
        let at_us = chrono::DateTime::parse_from_rfc3339(time)
            .with_context(|| format!("{}:{number}: time `{time}` is not RFC 3339", path.display()))?
            .timestamp_micros();
        lines.push(Line { number, at_us, body });
    }
    if lines.is_empty() {
        bail!("{} holds no position", path.display());
    }
    lines.sort_by_key(|l| l.at_us);
    Ok(lines)
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub fn run(conn: &crate::cli::OperatorConn, id: &str, track: &Path, speed: f64, now: bool) -> Result<()> {
    if !(speed.is_finite() && speed > 0.0) {
        bail!("--speed {speed}: must be a positive number");
    }
    let lines = read_track(track)?;
    let url = format!("{}/operator/intents/{id}/positions", conn.uss.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = conn.client(Duration::from_secs(30))?;
        let first_us = lines[0].at_us;
        let started = Instant::now();
        let started_us = chrono::Utc::now().timestamp_micros();
        let total = lines.len();
        let mut sent = 0usize;
        let mut last: Value = Value::Null;
        while sent < total {
            // Wait for the next position's moment on the replay clock.
            let due = Duration::from_secs_f64((lines[sent].at_us - first_us) as f64 / 1e6 / speed);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let elapsed = started.elapsed();
            let mut batch = Vec::new();
            while sent < total
                && batch.len() < 1000
                && Duration::from_secs_f64((lines[sent].at_us - first_us) as f64 / 1e6 / speed) <= elapsed
            {
                let line = &lines[sent];
                let mut body = line.body.clone();
                if now {
                    // Stamped when it is sent on the replay clock: the track's shape, today.
                    let shifted = started_us + ((line.at_us - first_us) as f64 / speed) as i64;
                    body.insert("time".into(), Value::String(rfc3339(shifted)));
                }
                batch.push(Value::Object(body));
                sent += 1;
            }
            let (status, answer) = post(&client, &url, &conn.token, &Value::Array(batch)).await?;
            if !(200..300).contains(&status) {
                eprintln!();
                let message = answer["message"].as_str().map(str::to_owned).unwrap_or_else(|| answer.to_string());
                let line = lines[sent - 1].number;
                match status {
                    401 | 403 => bail!(
                        "the participant refused the token (HTTP {status}: {message}): pass --token or set \
                         DECONFLICT_TOKEN to a token with deconflict.operator or deconflict.telemetry"
                    ),
                    _ => bail!("the participant refused the positions up to line {line} (HTTP {status}): {message}"),
                }
            }
            let state = answer["state"].as_str().unwrap_or("?");
            let verdict = if answer["conforming"].as_bool() == Some(false) { "OUTSIDE" } else { "inside" };
            let latest = &answer["latest"];
            eprint!(
                "\r[{sent}/{total}] {} {:.6},{:.6} {:.0} m  {state} {verdict}{}   ",
                latest["time"].as_str().unwrap_or_default(),
                latest["lat"].as_f64().unwrap_or_default(),
                latest["lng"].as_f64().unwrap_or_default(),
                latest["alt_m"].as_f64().unwrap_or_default(),
                answer["automatic_change"].as_str().map(|c| format!(" -> {c}")).unwrap_or_default()
            );
            let _ = std::io::stderr().flush();
            last = answer;
        }
        eprintln!();
        println!("{}", serde_json::to_string_pretty(&last)?);
        anyhow::Ok(())
    })
}

/// One request, retried a few times when the participant cannot be reached or is busy.
async fn post(client: &reqwest::Client, url: &str, token: &str, body: &Value) -> Result<(u16, Value)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client.post(url).bearer_auth(token).json(body).send().await;
        match sent {
            Ok(resp) if resp.status().as_u16() != 503 || attempt >= 3 => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                return Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))));
            }
            Ok(_) => {}
            Err(e) if attempt >= 3 => {
                return Err(anyhow::Error::new(e).context(format!("cannot reach the participant at {url}")))
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
    }
}
