//! The operator's commands (`plan`, `activate`, `modify`, `nonconforming`, `end`, `status`,
//! `constrain`): one call to the participant's operator API each, printed for a person.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// One request to the operator API: its status and JSON answer (or the text, if not JSON).
fn request(method: &str, conn: &crate::cli::OperatorConn, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Value)> {
    let uss = conn.uss.as_str();
    let url = format!("{}{}", uss.trim_end_matches('/'), path);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
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
    })
}

/// Calls the operator API; prints the answer; exits 2 when a plan is refused.
pub fn call(method: &str, conn: &crate::cli::OperatorConn, path: &str, file: Option<&PathBuf>) -> Result<()> {
    let body = file.map(read).transpose()?;
    let (status, value) = request(method, conn, path, body)?;
    finish(status, &value)
}

fn read(f: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(f).with_context(|| format!("reading {}", f.display()))
}

/// Prints an answer and its summary; the process's outcome from its status.
fn finish(status: u16, value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    if let Some(summary) = summarize(value) {
        eprintln!("{summary}");
    }
    match status {
        200..=299 => Ok(()),
        409 if value["outcome"] == "refused" => std::process::exit(2),
        401 | 403 => bail!("the participant refused the operator token (HTTP {status}): pass --token or set DECONFLICT_TOKEN to a token with the deconflict.operator scope"),
        _ => bail!("the participant answered HTTP {status}"),
    }
}

/// `plan`, and with `--accept-proposal` a refusal's proposal planned at once.
pub fn plan(conn: &crate::cli::OperatorConn, file: &PathBuf, accept_proposal: bool) -> Result<()> {
    let bytes = read(file)?;
    let (status, value) = request("POST", conn, "/operator/plan", Some(bytes.clone()))?;
    let proposal = value.get("proposal").filter(|p| !p.is_null());
    match (accept_proposal, status, proposal) {
        (true, 409, Some(proposal)) => {
            eprintln!("{}", summarize(&value).unwrap_or_default());
            let flight: Value =
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", file.display()))?;
            let moved = apply_proposal(&flight, proposal)?;
            eprintln!("accepting the proposal: planning the moved flight");
            let (status, value) = request("POST", conn, "/operator/plan", Some(serde_json::to_vec(&moved)?))?;
            finish(status, &value)
        }
        _ => finish(status, &value),
    }
}

/// The flight file moved as a proposal says: every volume `shift_start_s` later (relative
/// times stay relative), or `altitude_offset_m` up or down.
pub fn apply_proposal(flight: &Value, proposal: &Value) -> Result<Value> {
    let mut moved = flight.clone();
    let volumes = moved["volumes"].as_array_mut().context("the flight file has no `volumes` list")?;
    for v in volumes {
        if let Some(shift) = proposal["shift_start_s"].as_i64() {
            for key in ["start", "end"] {
                let t = v[key].as_str().with_context(|| format!("a volume's `{key}` is not text"))?;
                v[key] = Value::String(shifted(t, shift)?);
            }
        } else if let Some(dz) = proposal["altitude_offset_m"].as_f64() {
            for key in ["altitude_lower_m", "altitude_upper_m"] {
                let z = v[key].as_f64().with_context(|| format!("a volume's `{key}` is not a number"))?;
                v[key] = serde_json::json!(z + dz);
            }
        } else {
            bail!("the proposal is neither a time shift nor an altitude change: {proposal}");
        }
    }
    Ok(moved)
}

/// A flight file's time (`+N`, `+Nm`, `+Nh` or RFC 3339) `shift` seconds later.
fn shifted(t: &str, shift: i64) -> Result<String> {
    if let Some(seconds) = uss::operator::relative_seconds(t) {
        return Ok(format!("+{}", seconds.map_err(anyhow::Error::msg)? + shift));
    }
    let at = DateTime::parse_from_rfc3339(t).with_context(|| format!("`{t}` is not an RFC 3339 time"))?;
    Ok((at + chrono::Duration::seconds(shift)).with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// One line a person reads first.
pub fn summarize(v: &Value) -> Option<String> {
    let outcome = v["outcome"].as_str()?;
    let mut line = format!("{outcome}: {}", v["message"].as_str().unwrap_or_default());
    if let Some(p) = v.get("proposal").filter(|p| !p.is_null()) {
        line.push_str(&format!("\nproposal: {} clears every conflict (re-checked with the DSS)", describe_proposal(p)));
    }
    Some(line)
}

/// A proposal in words: "start 12 min 30 s later" or "move 40 m up".
pub fn describe_proposal(p: &Value) -> String {
    if let Some(s) = p["shift_start_s"].as_i64() {
        format!("start {} later", duration(s))
    } else if let Some(off) = p["altitude_offset_m"].as_f64() {
        format!("move {:.0} m {}", off.abs(), if off >= 0.0 { "up" } else { "down" })
    } else {
        p.to_string()
    }
}

/// Seconds as a person says them: `45 s`, `12 min 30 s`, `2 h 05 min`.
pub fn duration(seconds: i64) -> String {
    let (sign, s) = if seconds < 0 { ("-", -seconds) } else { ("", seconds) };
    match s {
        0..=59 => format!("{sign}{s} s"),
        60..=3599 if s % 60 == 0 => format!("{sign}{} min", s / 60),
        60..=3599 => format!("{sign}{} min {} s", s / 60, s % 60),
        _ => format!("{sign}{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// An RFC 3339 time without fractions, and how far from `now` it is.
fn when(t: &Value, now: DateTime<Utc>) -> String {
    let text = t["value"].as_str().or_else(|| t.as_str()).unwrap_or_default();
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => {
            let at = at.with_timezone(&Utc);
            let delta = (at - now).num_seconds();
            let rel = if delta >= 0 { format!("in {}", duration(delta)) } else { format!("{} ago", duration(-delta)) };
            format!("{} ({rel})", at.format("%Y-%m-%d %H:%M:%SZ"))
        }
        Err(_) if text.is_empty() => "-".into(),
        Err(_) => text.to_owned(),
    }
}

/// A table: a header and rows, columns padded to their widest cell.
fn table(title: &str, header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut out = format!("{title} ({})\n", rows.len());
    if rows.is_empty() {
        out.push_str("  none\n");
        return out;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    out.push_str(&line(header.iter().map(|h| (*h).to_owned()).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The participant's status as tables a person reads: own and others' operations,
/// constraints, recent notifications.
pub fn render_status(v: &Value, now: DateTime<Utc>) -> String {
    let text = |x: &Value| {
        x.as_str().map(str::to_owned).unwrap_or_else(|| if x.is_null() { "-".into() } else { x.to_string() })
    };
    let entries = |key: &str| -> Vec<(String, Value)> {
        let mut list: Vec<(String, Value)> =
            v[key].as_object().map(|m| m.iter().map(|(k, x)| (k.clone(), x.clone())).collect()).unwrap_or_default();
        // Soonest first.
        list.sort_by_key(|(_, x)| {
            let r = if x["intent"].is_object() {
                &x["intent"]["reference"]
            } else if x["constraint"].is_object() {
                &x["constraint"]["reference"]
            } else {
                &x["reference"]
            };
            r["time_start"]["value"].as_str().unwrap_or_default().to_owned()
        });
        list
    };
    let intent_row = |id: &str, x: &Value, own: bool| {
        let i = if own { &x["intent"] } else { x };
        let r = &i["reference"];
        let mut row = vec![id.to_owned()];
        if !own {
            row.push(text(&r["manager"]));
        }
        row.extend([
            text(&r["state"]),
            text(&i["details"]["priority"]),
            i["details"]["volumes"].as_array().map_or(0, Vec::len).to_string(),
            when(&r["time_start"], now),
            when(&r["time_end"], now),
        ]);
        row
    };
    let mut out = format!("participant {} at {}\n\n", text(&v["participant"]), text(&v["base_url"]));
    let own: Vec<Vec<String>> = entries("own_intents").iter().map(|(id, x)| intent_row(id, x, true)).collect();
    out.push_str(&table("Own operations", &["ID", "STATE", "PRIORITY", "VOLUMES", "STARTS", "ENDS"], own));
    let others: Vec<Vec<String>> = entries("others_intents").iter().map(|(id, x)| intent_row(id, x, false)).collect();
    out.push('\n');
    out.push_str(&table(
        "Others' operations",
        &["ID", "MANAGER", "STATE", "PRIORITY", "VOLUMES", "STARTS", "ENDS"],
        others,
    ));
    let mut constraints: Vec<Vec<String>> = Vec::new();
    for (key, own) in [("own_constraints", true), ("others_constraints", false)] {
        for (id, x) in entries(key) {
            let c = if own { &x["constraint"] } else { &x };
            let r = &c["reference"];
            constraints.push(vec![
                id,
                if own { format!("{} (ours)", text(&r["manager"])) } else { text(&r["manager"]) },
                when(&r["time_start"], now),
                when(&r["time_end"], now),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table("Constraints", &["ID", "MANAGER", "STARTS", "ENDS"], constraints));
    let notifications: Vec<Vec<String>> = v["notifications"]
        .as_array()
        .map(|list| {
            list.iter()
                .take(10)
                .map(|n| {
                    vec![
                        when(&n["received_at"], now),
                        text(&n["from"]),
                        text(&n["kind"]),
                        text(&n["entity_id"]),
                        if n["version"].is_null() { "deleted".into() } else { text(&n["state"]) },
                        n["note"].as_str().unwrap_or_default().chars().take(80).collect(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push('\n');
    out.push_str(&table(
        "Recent notifications, newest first",
        &["RECEIVED", "FROM", "KIND", "ENTITY", "STATE", "NOTE"],
        notifications,
    ));
    if let Some(pending) = v["in_flight"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(&format!("\nchanges in flight (being reconciled): {}\n", pending.len()));
    }
    out
}

/// `status`: tables, or the raw JSON with --json.
pub fn status(conn: &crate::cli::OperatorConn, json: bool) -> Result<()> {
    let (status, value) = request("GET", conn, "/operator/status", None)?;
    if json || !(200..300).contains(&status) {
        return finish(status, &value);
    }
    print!("{}", render_status(&value, Utc::now()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_proposals_read_as_people_say_them() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(754), "12 min 34 s");
        assert_eq!(duration(7500), "2 h 05 min");
        assert_eq!(describe_proposal(&json!({"shift_start_s": 754})), "start 12 min 34 s later");
        assert_eq!(describe_proposal(&json!({"altitude_offset_m": -30.4})), "move 30 m down");
    }

    #[test]
    fn a_proposal_moves_the_flight_file() {
        let flight = json!({"altitude_reference": "W84", "volumes": [
            {"start": "+10m", "end": "+40m", "altitude_lower_m": 0, "altitude_upper_m": 120},
            {"start": "2026-12-07T10:00:00.123456Z", "end": "2026-12-07T10:30:00Z", "altitude_lower_m": 50, "altitude_upper_m": 90}]});
        let later = apply_proposal(&flight, &json!({"shift_start_s": 300})).expect("shift");
        assert_eq!(later["volumes"][0]["start"], "+900");
        assert_eq!(later["volumes"][0]["end"], "+2700");
        assert_eq!(later["volumes"][1]["start"], "2026-12-07T10:05:00Z");
        assert_eq!(later["volumes"][1]["end"], "2026-12-07T10:35:00Z");
        let higher = apply_proposal(&flight, &json!({"altitude_offset_m": 150.0})).expect("up");
        assert_eq!(
            (higher["volumes"][1]["altitude_lower_m"].as_f64(), higher["volumes"][1]["altitude_upper_m"].as_f64()),
            (Some(200.0), Some(240.0))
        );
        assert_eq!(higher["altitude_reference"], "W84");
    }

    #[test]
    fn status_reads_as_tables() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").expect("time").with_timezone(&Utc);
        let reference = |manager: &str, state: &str| {
            json!({"manager": manager, "state": state, "version": 1,
            "time_start": {"value": "2026-12-07T10:05:00.123456Z", "format": "RFC3339"},
            "time_end": {"value": "2026-12-07T10:35:00Z", "format": "RFC3339"}})
        };
        let v = json!({
            "participant": "alpha", "base_url": "https://alpha.example",
            "own_intents": {"a1": {"intent": {"reference": reference("alpha", "Accepted"), "details": {"volumes": [{}], "priority": 0}}, "notified": []}},
            "others_intents": {"b1": {"reference": reference("bravo", "Activated"), "details": {"volumes": [{}, {}], "priority": 5}}},
            "own_constraints": {}, "others_constraints": {"z1": {"reference": reference("authority", ""), "details": {"volumes": []}}},
            "notifications": [{"received_at": "2026-12-07T09:58:00Z", "from": "bravo", "kind": "operational_intent",
                               "entity_id": "b1", "version": 2, "state": "Activated", "accepted": true}],
            "in_flight": []
        });
        let text = render_status(&v, now);
        for needle in [
            "Own operations (1)",
            "a1  Accepted  0         1        2026-12-07 10:05:00Z (in 5 min)",
            "b1  bravo    Activated  5         2",
            "Constraints (1)",
            "z1  authority",
            "2026-12-07 09:58:00Z (2 min ago)  bravo",
        ] {
            assert!(text.contains(needle), "`{needle}` missing in:\n{text}");
        }
        assert!(!text.contains(".123456"), "no microseconds:\n{text}");
    }
}
