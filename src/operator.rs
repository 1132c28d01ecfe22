//! The operator's commands (`plan`, `activate`, `modify`, `nonconforming`, `end`, `status`,
//! `constrain`): one call to the participant's operator API each, printed for a person.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Calls the operator API; prints the answer; exits 2 when a plan is refused.
pub fn call(method: &str, conn: &crate::cli::OperatorConn, path: &str, file: Option<&PathBuf>) -> Result<()> {
    let uss = conn.uss.as_str();
    let body = match file {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?),
        None => None,
    };
    let url = format!("{}{}", uss.trim_end_matches('/'), path);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, value) = runtime.block_on(async {
        let client = conn.client(std::time::Duration::from_secs(120))?;
        let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes())?, &url).bearer_auth(&conn.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the participant at {uss}: {}", client::tls::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        anyhow::Ok((status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))))
    })?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    if let Some(summary) = summarize(&value) {
        eprintln!("{summary}");
    }
    match status {
        200..=299 => Ok(()),
        409 if value["outcome"] == "refused" => std::process::exit(2),
        401 | 403 => bail!("the participant refused the operator token (HTTP {status}): pass --token or set DECONFLICT_TOKEN to a token with the deconflict.operator scope"),
        _ => bail!("the participant answered HTTP {status}"),
    }
}

/// One line a person reads first.
pub fn summarize(v: &Value) -> Option<String> {
    let outcome = v["outcome"].as_str()?;
    let mut line = format!("{outcome}: {}", v["message"].as_str().unwrap_or_default());
    if let Some(p) = v.get("proposal").filter(|p| !p.is_null()) {
        if let Some(s) = p["shift_start_s"].as_i64() {
            line.push_str(&format!("\nproposal: start {s} s later clears every conflict (re-checked with the DSS)"));
        } else if let Some(off) = p["altitude_offset_m"].as_f64() {
            line.push_str(&format!(
                "\nproposal: move {off:+.0} m in altitude clears every conflict (re-checked with the DSS)"
            ));
        }
    }
    Some(line)
}
