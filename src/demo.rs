//! `deconflict demo`: a token server, a DSS, two participants (alpha, bravo) and an authority,
//! all on free loopback ports in a temporary directory, then a scenario printed as a timeline.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A child process that is killed when dropped.
pub struct Proc {
    child: Child,
    pub url: String,
    /// A participant's operator interface.
    pub operator: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `deconflict <args>` and waits for its `listening on` line.
pub fn spawn(args: &[&str], log: &Path) -> Result<Proc> {
    let exe = std::env::current_exe()?;
    let log_file = std::fs::File::create(log)?;
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .with_context(|| format!("starting deconflict {}", args.join(" ")))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let Some(url) = line.trim().split(" listening on ").nth(1).map(str::to_owned) else {
        let _ = child.kill();
        bail!("deconflict {} did not start; see {}", args.join(" "), log.display());
    };
    let mut operator = String::new();
    if args.first() == Some(&"uss") {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let Some(op) = line.trim().split(" operator listening on ").nth(1) else {
            let _ = child.kill();
            bail!("deconflict {} did not open its operator interface; see {}", args.join(" "), log.display());
        };
        operator = op.to_owned();
    }
    Ok(Proc { url, operator, child })
}

/// A token for a participant's operator interface, signed with the development key the demo's
/// participants trust.
fn operator_token(sub: &str) -> Result<String> {
    dev_token(sub, "deconflict.operator")
}

/// A token for `scope`, signed with the development key the demo's servers trust.
fn dev_token(sub: &str, scope: &str) -> Result<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let key = EncodingKey::from_rsa_pem(crate::DEV_PRIVATE_KEY.as_bytes())
        .or_else(|_| EncodingKey::from_ec_pem(crate::DEV_PRIVATE_KEY.as_bytes()))?;
    let alg = if EncodingKey::from_ec_pem(crate::DEV_PRIVATE_KEY.as_bytes()).is_ok() {
        Algorithm::ES256
    } else {
        Algorithm::RS256
    };
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "deconflict-demo", "sub": sub, "aud": "127.0.0.1", "scope": scope,
                        "iat": now, "exp": now + 3600});
    Ok(jsonwebtoken::encode(&Header::new(alg), &claims, &key)?)
}

/// An operator: its participant's operator interface and its token.
struct Operator {
    url: String,
    token: String,
}

struct Timeline {
    start: Instant,
}

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let t = self.start.elapsed().as_secs_f64();
        for (i, line) in what.as_ref().lines().enumerate() {
            if i == 0 {
                println!("[{t:6.2}s] {who:<9} {line}");
            } else {
                println!("{:>19} {line}", "");
            }
        }
    }
}

async fn op(uss: &Operator, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build()?;
    let mut req = client
        .request(reqwest::Method::from_bytes(method.as_bytes())?, format!("{}{path}", uss.url))
        .bearer_auth(&uss.token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn circle(lat: f64, lng: f64, r: f64, lo: f64, hi: f64, start: &str, end: &str) -> Value {
    json!({"footprint": {"type": "Circle", "center": [lng, lat], "radius_m": r},
           "altitude_lower_m": lo, "altitude_upper_m": hi, "start": start, "end": end})
}

fn notified(v: &Value) -> String {
    let list: Vec<String> = v["notified"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    format!(
                        "{} ({})",
                        d["uss_base_url"].as_str().unwrap_or("?"),
                        if d["sending"] == true {
                            "being sent after the answer"
                        } else if d["acknowledged"] == true {
                            "acknowledged"
                        } else {
                            "FAILED"
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "nobody else to notify".into()
    } else {
        format!("notified {}", list.join(", "))
    }
}

fn explain(v: &Value) -> String {
    let mut out = Vec::new();
    for c in v["conflicts"].as_array().into_iter().flatten() {
        let band = c["overlap_altitude_m"]
            .as_array()
            .map(|b| format!(" at {:.0}-{:.0} m", b[0].as_f64().unwrap_or(0.0), b[1].as_f64().unwrap_or(0.0)))
            .unwrap_or_default();
        out.push(format!(
            "- {} {} of {}: my volume {} vs their volume {}, overlapping {} .. {}{}",
            c["kind"].as_str().unwrap_or("?").replace('_', " "),
            c["id"].as_str().unwrap_or("?"),
            c["manager"].as_str().unwrap_or("?"),
            c["my_volume"],
            c["their_volume"],
            c["overlap_start"].as_str().unwrap_or("?"),
            c["overlap_end"].as_str().unwrap_or("?"),
            band
        ));
    }
    if let Some(p) = v.get("proposal").filter(|p| !p.is_null()) {
        out.push(format!("proposal: {} (re-checked with the DSS)", crate::operator::describe_proposal(p)));
    }
    out.join("\n")
}

/// The answer `v` of a change with its notifications' outcomes: they go out after the answer,
/// so wait (at most 5 s) until the participant's status shows each one settled. An entity
/// that no longer exists (ended) keeps the answer's "being sent".
async fn with_outcomes(uss: &Operator, v: &Value) -> Result<Value> {
    let sending = |list: &Value| list.as_array().is_some_and(|l| l.iter().any(|d| d["sending"] == true));
    if !sending(&v["notified"]) {
        return Ok(v.clone());
    }
    let (table, id) = match (v["operational_intent_id"].as_str(), v["constraint_id"].as_str()) {
        (Some(id), _) => ("own_intents", id),
        (None, Some(id)) => ("own_constraints", id),
        _ => return Ok(v.clone()),
    };
    let mut out = v.clone();
    for _ in 0..50 {
        let (_, st) = op(uss, "GET", "/operator/status", None).await?;
        let list = &st[table][id]["notified"];
        if list.is_null() {
            break;
        }
        out["notified"] = list.clone();
        if !sending(list) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(out)
}

async fn notifications(uss: &Operator) -> Result<usize> {
    let (_, s) = op(uss, "GET", "/operator/status", None).await?;
    Ok(s["notifications"].as_array().map_or(0, Vec::len))
}

/// Runs the scenario; every step is checked, so a broken system makes the demo fail.
pub fn run(keep_running: bool, ready_file: Option<&Path>, map_tiles: Option<&str>) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let public = dir.join("auth-public.pem");
    std::fs::write(&public, crate::DEV_PUBLIC_KEY)?;
    let pubs = public.to_string_lossy().to_string();
    let p = |name: &str| dir.join(name).to_string_lossy().to_string();
    let tl = Timeline { start: Instant::now() };

    let auth = spawn(&["auth", "--listen", "127.0.0.1:0"], &dir.join("auth.log"))?;
    let token_url = format!("{}/token", auth.url);
    let auds = ["--jwt-audience", "127.0.0.1", "--jwt-audience", "localhost"];
    // Local processes on plain HTTP: both sides allow http:// base URLs.
    let mut dss_args =
        vec!["dss", "--listen", "127.0.0.1:0", "--allow-http-base-urls", "--jwt-public-key", pubs.as_str()];
    let dss_dir = p("dss");
    dss_args.extend(["--data-dir", dss_dir.as_str()]);
    dss_args.extend(auds);
    let dss = spawn(&dss_args, &dir.join("dss.log"))?;
    let participant = |name: &str, scopes: &[&str]| -> Result<Proc> {
        let data = p(name);
        let mut a =
            vec!["uss", "--listen", "127.0.0.1:0", "--operator-listen", "127.0.0.1:0", "--allow-http-base-urls"];
        a.extend(["--data-dir", data.as_str(), "--dss-url", dss.url.as_str()]);
        a.extend(["--token-url", token_url.as_str(), "--client-id", name, "--jwt-public-key", pubs.as_str()]);
        a.extend(auds);
        if let Some(tiles) = map_tiles {
            a.extend(["--map-tiles", tiles]);
        }
        for s in scopes {
            a.extend(["--scope", s]);
        }
        spawn(&a, &dir.join(format!("{name}.log")))
    };
    // Both network Remote ID roles as well: a flying flight is announced in an ISA, and the
    // maps show every provider's Remote ID traffic.
    let full = [
        "utm.strategic_coordination",
        "utm.constraint_processing",
        "utm.conformance_monitoring_sa",
        "rid.service_provider",
        "rid.display_provider",
    ];
    let alpha = participant("alpha", &full)?;
    let bravo = participant("bravo", &full)?;
    let authority = participant("authority", &["utm.constraint_management"])?;
    tl.say(
        "setup",
        format!(
            "auth {}  dss {}  alpha {} (operator {})  bravo {} (operator {})  authority {} (operator {})",
            auth.url, dss.url, alpha.url, alpha.operator, bravo.url, bravo.operator, authority.url, authority.operator
        ),
    );

    let operator_of = |p: &Proc, name: &str| -> Result<Operator> {
        Ok(Operator { url: p.operator.clone(), token: operator_token(&format!("{name}-operator"))? })
    };
    let (alpha_proc, bravo_proc, authority_proc) = (alpha, bravo, authority);
    let alpha = operator_of(&alpha_proc, "alpha")?;
    let bravo = operator_of(&bravo_proc, "bravo")?;
    let authority = operator_of(&authority_proc, "authority")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let (lat, lng) = (47.0, 8.0);
        // bravo keeps a planning-area subscription so it hears of everything near its work.
        let area = json!({"altitude_reference": "W84", "volumes": [circle(lat, lng, 3000.0, 0.0, 400.0, "+0", "+3h")]});
        let (s, _) = op(&bravo, "POST", "/operator/subscribe", Some(&area)).await?;
        anyhow::ensure!(s == 200, "bravo could not subscribe");
        tl.say("bravo", "subscribes to its 3 km planning area for the next 3 hours");

        let flight_a = json!({"altitude_reference": "W84", "volumes": [circle(lat, lng, 400.0, 0.0, 120.0, "+0", "+25m")], "priority": 0});
        let (s, a) = op(&alpha, "POST", "/operator/plan", Some(&flight_a)).await?;
        anyhow::ensure!(s == 200, "alpha's plan failed: {a}");
        let a_id = a["operational_intent_id"].as_str().unwrap_or_default().to_owned();
        tl.say("alpha", format!("plans {a_id}: 400 m circle, 0-120 m, now..+25 min -> {}\n{}", a["outcome"], notified(&with_outcomes(&alpha, &a).await?)));

        let flight_b = json!({"altitude_reference": "W84", "volumes": [circle(lat + 0.003, lng, 300.0, 50.0, 150.0, "+15m", "+35m")], "priority": 0});
        let (s, refused) = op(&bravo, "POST", "/operator/plan", Some(&flight_b)).await?;
        anyhow::ensure!(s == 409 && refused["outcome"] == "refused", "bravo's overlapping plan was not refused: {refused}");
        tl.say("bravo", format!("plans an overlapping flight -> REFUSED: {}\n{}", refused["message"].as_str().unwrap_or(""), explain(&refused)));
        let shift = refused["proposal"]["shift_start_s"].as_i64().context("no time-shift proposal")?;
        let shifted = json!({"altitude_reference": "W84", "volumes": [circle(lat + 0.003, lng, 300.0, 50.0, 150.0, &format!("+{}", 15 * 60 + shift), &format!("+{}", 35 * 60 + shift))], "priority": 0});
        let (s, b) = op(&bravo, "POST", "/operator/plan", Some(&shifted)).await?;
        anyhow::ensure!(s == 200, "bravo's shifted plan failed: {b}");
        let b_id = b["operational_intent_id"].as_str().unwrap_or_default().to_owned();
        tl.say("bravo", format!("accepts the proposal: starts {shift} s later -> {} {b_id}\n{}", b["outcome"], notified(&with_outcomes(&bravo, &b).await?)));

        let zone = json!({"altitude_reference": "W84", "volumes": [circle(lat - 0.004, lng, 250.0, 0.0, 400.0, "+0", "+2h")]});
        let (s, z) = op(&authority, "POST", "/operator/constraints", Some(&zone)).await?;
        anyhow::ensure!(s == 200, "constraint failed: {z}");
        tl.say("authority", format!("publishes restricted zone {} (250 m, 0-400 m, next 2 h)\n{}", z["constraint_id"].as_str().unwrap_or(""), notified(&with_outcomes(&authority, &z).await?)));
        let into_zone = json!({"altitude_reference": "W84", "volumes": [circle(lat - 0.004, lng + 0.002, 100.0, 0.0, 100.0, "+40m", "+50m")]});
        let (s, r) = op(&bravo, "POST", "/operator/plan", Some(&into_zone)).await?;
        anyhow::ensure!(s == 409, "a plan into the zone was not refused: {r}");
        tl.say("bravo", format!("plans into the zone -> REFUSED: {}\n{}", r["message"].as_str().unwrap_or(""), explain(&r)));

        let before = notifications(&bravo).await?;
        let (s, act) = op(&alpha, "POST", &format!("/operator/intents/{a_id}/activate"), None).await?;
        anyhow::ensure!(s == 200, "activation failed: {act}");
        tl.say("alpha", format!("activates {a_id}\n{}", notified(&with_outcomes(&alpha, &act).await?)));
        // alpha's aircraft reports its positions (a recorded track replayed by `deconflict
        // telemetry`): it drifts east out of its 400 m circle, and the conformance monitor
        // declares the operation Nonconforming on its own and tells bravo.
        let track = dir.join("alpha-track.jsonl");
        let lines: Vec<String> = (0..7)
            .map(|i| {
                let t = chrono::Utc::now() + chrono::Duration::seconds(i);
                json!({"time": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "lat": lat,
                       "lng": lng + (i as f64 * 100.0) / 75_900.0, "alt_m": 80.0, "accuracy_h_m": 5.0,
                       "accuracy_v_m": 3.0, "speed_mps": 10.0, "track_deg": 90.0})
                .to_string()
            })
            .collect();
        std::fs::write(&track, lines.join("\n") + "\n")?;
        let replay = tokio::process::Command::new(std::env::current_exe()?)
            .args(["telemetry", "--uss", alpha.url.as_str(), "--token", alpha.token.as_str(), a_id.as_str()])
            .arg(&track)
            .args(["--now", "--speed", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let replayed = tokio::time::timeout(std::time::Duration::from_secs(30), replay).await.context("the replay hung")??;
        anyhow::ensure!(replayed.success(), "deconflict telemetry failed");
        tl.say("alpha", "its aircraft reports positions (deconflict telemetry): it drifts 600 m east, out of its 400 m circle");
        let mut nc = Value::Null;
        for _ in 0..100 {
            let (_, st) = op(&alpha, "GET", "/operator/status", None).await?;
            if st["own_intents"][&a_id]["intent"]["reference"]["state"] == "Nonconforming" {
                nc = st;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::ensure!(!nc.is_null(), "the conformance monitor did not declare alpha's flight Nonconforming");
        let why = nc["flights"][&a_id]["last_automatic_change"].as_str().unwrap_or_default().to_owned();
        let answer = json!({"operational_intent_id": a_id, "notified": nc["own_intents"][&a_id]["notified"]});
        tl.say("alpha", format!("goes Nonconforming on its own: {why}\n{}", notified(&with_outcomes(&alpha, &answer).await?)));
        let (s, end) = op(&alpha, "POST", &format!("/operator/intents/{a_id}/end"), None).await?;
        anyhow::ensure!(s == 200, "end failed: {end}");
        tl.say("alpha", format!("ends {a_id}\n{}", notified(&with_outcomes(&alpha, &end).await?)));
        // Notifications go out after each answer: wait (bounded) for bravo to have heard all three.
        let mut after = notifications(&bravo).await?;
        for _ in 0..100 {
            if after >= before + 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            after = notifications(&bravo).await?;
        }
        anyhow::ensure!(after >= before + 3, "bravo was not told of each change ({before} -> {after})");
        tl.say("bravo", format!("has received {after} notifications, {} during alpha's activation, nonconformance and end", after - before));

        if keep_running {
            // alpha subscribes too, so bravo's changes on the map are delivered somewhere.
            let (s, _) = op(&alpha, "POST", "/operator/subscribe", Some(&area)).await?;
            anyhow::ensure!(s == 200, "alpha could not subscribe");
            // A flight of alpha's that stays, so the map shows both participants' operations.
            let stays = json!({"altitude_reference": "W84", "volumes": [circle(lat + 0.010, lng + 0.006, 350.0, 0.0, 120.0, "+10m", "+70m")], "priority": 0});
            let (s, kept) = op(&alpha, "POST", "/operator/plan", Some(&stays)).await?;
            anyhow::ensure!(s == 200, "alpha's lasting flight failed: {kept}");
            let kept_id = kept["operational_intent_id"].as_str().unwrap_or_default().to_owned();
            tl.say("alpha", format!("plans {kept_id} (350 m, 0-120 m, +10..+70 min), left running for the map\n{}", notified(&with_outcomes(&alpha, &kept).await?)));
            let map_token = dev_token("authority-viewer", "deconflict.map.read")?;
            let dss_map = format!("{}/map#14/{lat}/{lng}", dss.url);
            if let Some(path) = ready_file {
                let ready = json!({
                    "dss": dss.url, "dss_map": dss_map, "dss_map_token": map_token, "token_server": auth.url,
                    "alpha": {"peers": alpha_proc.url, "operator": alpha.url, "token": alpha.token, "kept_intent": kept_id},
                    "bravo": {"peers": bravo_proc.url, "operator": bravo.url, "token": bravo.token, "intent": b_id},
                    "authority": {"peers": authority_proc.url, "operator": authority.url, "token": authority.token},
                    "center": [lng, lat],
                });
                std::fs::write(path, serde_json::to_vec_pretty(&ready)?)?;
            }
            println!("\nMaps (open in a browser, sign in with the token below):");
            println!("  bravo's operator map  {}/", bravo.url);
            println!("  alpha's operator map  {}/", alpha.url);
            println!("  the DSS's airspace    {dss_map}");
            println!("Operator token for alpha (scope deconflict.operator, valid 1 h):\n  {}", alpha.token);
            println!("Map token for the DSS (scope deconflict.map.read, valid 1 h):\n  {map_token}");
            let tok = |sub: &str| format!("{token_url}?grant_type=client_credentials&sub={sub}&scope=utm.strategic_coordination&intended_audience=127.0.0.1");
            println!("\nServers are running (Ctrl-C to stop):\n  token server {}\n  DSS          {}", auth.url, dss.url);
            for (name, p, o) in [("alpha", &alpha_proc, &alpha), ("bravo", &bravo_proc, &bravo), ("authority", &authority_proc, &authority)] {
                println!("  {name:<10} peers {}  operator {}", p.url, o.url);
            }
            println!("Peer tokens: curl '{}'", tok("alpha"));
            println!("Operator token for bravo (scope deconflict.operator, valid 1 h):\n  export DECONFLICT_TOKEN={}", bravo.token);
            println!("Try: deconflict status --uss {}", bravo.url);
            // Ctrl-C, or SIGTERM from a script: dropping the processes stops them all.
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = terminate.recv() => {}
            }
            return Ok(());
        }
        let (s, _) = op(&bravo, "POST", &format!("/operator/intents/{b_id}/end"), None).await?;
        anyhow::ensure!(s == 200, "bravo could not end its flight");
        let zid = z["constraint_id"].as_str().unwrap_or_default();
        let (s, _) = op(&authority, "POST", &format!("/operator/constraints/{zid}/end"), None).await?;
        anyhow::ensure!(s == 200, "the authority could not end its zone");
        tl.say("cleanup", "bravo ends its flight, the authority lifts the zone; stopping all servers");
        anyhow::Ok(())
    })?;
    Ok(())
}
