//! `deconflict`: the command-line entry point. Glue only: parse flags, open the store, start
//! servers. Everything reusable lives in `crates/`.

/// mimalloc instead of glibc's allocator: in the city benchmark glibc's malloc/free (with its
/// fastbin consolidation) was about a tenth of the server's CPU; requests allocate and free many
/// small buffers (bodies, JSON, result vectors) across two worker threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

mod cli;
mod config;
mod demo;
mod operator;
mod pool;
mod telemetry;
use clap::Parser;
use cli::*;
use dss::{Config, Dss, SystemClock};
use server::auth::Verifier;
use server::AppState;
use store_embedded::EmbeddedStore;

/// The development signing key used by `deconflict token` and accepted by `--insecure-dev-auth`.
/// It is public (it is in this repository): never trust it in a real deployment.
pub(crate) const DEV_PRIVATE_KEY: &str = include_str!("keys/dev-private.pem");
pub(crate) const DEV_PUBLIC_KEY: &str = include_str!("keys/dev-public.pem");

/// The shutdown grace period chosen on the command line.
static SHUTDOWN_GRACE_S: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Reports cannot be larger than a request body.
const MAX_REPORT_BYTES_CEILING: usize = server::MAX_BODY_BYTES;

/// The log format chosen on the command line (read by `init_logs`).
static LOG_JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
/// `--otlp-endpoint` (read by `init_logs`).
static OTLP_ENDPOINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

fn main() -> Result<()> {
    let argv = match config::expand(std::env::args_os().collect(), &|name| std::env::var(name).ok()) {
        Ok(argv) => argv,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    };
    let cli = Cli::parse_from(argv);
    let _ = LOG_JSON.set(cli.log_format == "json");
    let _ = OTLP_ENDPOINT.set(cli.otlp_endpoint.clone());
    let _ = SHUTDOWN_GRACE_S.set(cli.shutdown_grace_secs);
    // Every server here holds one descriptor per connection: use what the system allows.
    server::http::raise_file_limit();
    match cli.command {
        Command::Dss(args) => run_dss(*args),
        Command::Bench(args) => run_bench(*args),
        Command::Auth(args) => run_auth(args),
        Command::Uss(args) => run_uss(*args),
        Command::Plan(a) => operator::plan(&a.conn, &a.file, a.accept_proposal),
        Command::Activate(a) => operator::call("POST", &a.conn, &format!("/operator/intents/{}/activate", a.id), None),
        Command::Modify(a) => {
            operator::call("POST", &a.conn, &format!("/operator/intents/{}/modify", a.id), Some(&a.file))
        }
        Command::Nonconforming(a) => {
            operator::call("POST", &a.conn, &format!("/operator/intents/{}/nonconforming", a.id), None)
        }
        Command::End(a) => operator::call("POST", &a.conn, &format!("/operator/intents/{}/end", a.id), None),
        Command::Telemetry(a) => telemetry::run(&a.conn, &a.id, &a.track, a.speed, a.now),
        Command::Status(a) => operator::status(&a.conn, a.json),
        Command::Constrain(a) => operator::call("POST", &a.conn, "/operator/constraints", Some(&a.file)),
        Command::Demo(args) => demo::run(args.keep_running, args.ready_file.as_deref(), args.map_tiles.as_deref()),
        Command::Pool(a) => pool::run(pool::PoolOptions {
            members: a.members,
            dir: a.dir,
            jwt_public_keys: a.jwt_public_keys,
            jwks_urls: a.jwks_urls,
            ca_certs: a.ca_certs,
            otlp_endpoint: OTLP_ENDPOINT.get().cloned().flatten(),
            jwt_audiences: a.jwt_audiences,
            read_leases: a.etcd_read_leases,
            peer_proxies: a.peer_proxies,
        }),
        Command::Token(args) => {
            println!("{}", mint_token(&args)?);
            Ok(())
        }
    }
}

fn mint_token(args: &TokenArgs) -> Result<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = match &args.key {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => DEV_PRIVATE_KEY.as_bytes().to_vec(),
    };
    let (key, alg) = if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
        (k, Algorithm::ES256)
    } else if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
        (k, Algorithm::RS256)
    } else {
        bail!("the key is neither a PEM EC P-256 nor an RSA private key");
    };
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "deconflict-dev",
        "sub": args.sub,
        "aud": args.audience,
        "scope": args.scopes.join(" "),
        "iat": now,
        "nbf": now,
        "exp": now + args.ttl_secs as i64,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    Ok(jsonwebtoken::encode(&Header::new(alg), &claims, &key)?)
}

fn run_dss(args: DssArgs) -> Result<()> {
    let _traces = init_traced_logs("deconflict-dss", &args.tls.trust()?)?;
    let mut pems = read_keys(&args.jwt_public_keys)?;
    if args.insecure_dev_auth {
        tracing::warn!("--insecure-dev-auth: accepting tokens signed by the PUBLIC development key");
        tracing::warn!("anyone can mint such tokens: never use --insecure-dev-auth outside local development");
        pems.push(("development key".into(), DEV_PUBLIC_KEY.as_bytes().to_vec()));
    } else if pems.is_empty() && args.jwks.jwks_urls.is_empty() {
        bail!("no --jwt-public-key or --jwks-url given: pass your token issuer's PEM public key(s) or key set URL, or --insecure-dev-auth for local development");
    }
    // Development mode accepts what a local participant asks for: its token server is told the
    // DSS's host, and http://127.0.0.1:8082 gives `127.0.0.1`.
    let audiences = match (args.jwt_audiences.is_empty(), args.insecure_dev_auth) {
        (false, _) => args.jwt_audiences.clone(),
        (true, false) => vec!["localhost".to_owned()],
        (true, true) => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
    };
    let verifier = verifier(&pems, audiences, &args.jwks)?.with_max_lifetime(args.max_token_lifetime_secs);

    if !(args.relevance_margin_m.is_finite() && (0.0..=10_000.0).contains(&args.relevance_margin_m)) {
        bail!("--relevance-margin-m must be between 0 and 10000 metres");
    }
    let map_scope = auth::Scope::parse(&args.map_scope).with_context(|| {
        format!("--map-scope `{}` is not a scope this system knows (e.g. deconflict.map.read)", args.map_scope)
    })?;
    let allow_http_base_urls = args.allow_http_base_urls || args.insecure_dev_auth;
    if args.insecure_dev_auth && !args.allow_http_base_urls {
        tracing::warn!("--insecure-dev-auth: also accepting http:// USS base URLs (as --allow-http-base-urls)");
    }
    let config = Config {
        allow_http_base_urls,
        map_scope,
        retention_s: args.retention_secs.max(0),
        strict_scopes: args.strict_scopes,
        relevance_margin_m: args.relevance_margin_m,
        quotas: dss::Quotas {
            max_intents: args.max_intents_per_manager,
            max_constraints: args.max_constraints_per_manager,
            max_subscriptions: args.max_subscriptions_per_manager,
            max_vertices: args.max_vertices_per_manager,
            max_isas: args.max_isas_per_manager,
            max_rid_subscriptions: args.max_rid_subscriptions_per_manager,
        },
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(start_jwks(&args.jwks, &args.tls.trust()?, verifier.jwks().into_iter().collect()))?;
    match args.store.as_str() {
        "etcd" => {
            if args.etcd_endpoints.is_empty() {
                bail!("--store etcd needs --etcd-endpoints http://HOST:2379[,...]");
            }
            let endpoints: Vec<String> = args
                .etcd_endpoints
                .iter()
                .flat_map(|e| e.split(','))
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>> {
                p.as_ref().map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display()))).transpose()
            };
            let etcd_config = store_etcd::EtcdConfig {
                endpoints: endpoints.clone(),
                prefix: args.etcd_prefix.clone(),
                ca_pem: read(&args.etcd_ca)?,
                client_cert_pem: read(&args.etcd_cert)?,
                client_key_pem: read(&args.etcd_key)?,
                ack_ca_pems: args
                    .tls
                    .ca_certs
                    .iter()
                    .map(|p| std::fs::read(p).with_context(|| format!("reading --ca-cert {}", p.display())))
                    .collect::<Result<_>>()?,
            };
            let store = runtime
                .block_on(store_etcd::EtcdStore::open(etcd_config))
                .with_context(|| format!("connecting to etcd at {}", endpoints.join(", ")))?;
            tracing::info!(endpoints = %endpoints.join(","), revision = store.applied_revision(), "etcd store loaded");
            let ack_url = args.etcd_read_leases.then(|| args.etcd_ack_url.clone().unwrap_or_default());
            let registry = Box::new(store_etcd::EtcdRegistry::new(store.clone(), ack_url));
            runtime.block_on(serve_dss(store, verifier, config, registry, &args))
        }
        _ => {
            let started = std::time::Instant::now();
            let mode = if args.commit_mode == "serial" {
                store_embedded::CommitMode::Serial
            } else {
                store_embedded::CommitMode::Group
            };
            let options = store_embedded::StoreOptions {
                mode,
                compaction: store_embedded::CompactionPolicy {
                    live_factor: args.compact_live_factor.max(1),
                    max_log_bytes: args.compact_max_log_mib.max(1) << 20,
                    min_log_bytes: args.compact_min_log_kib.max(1) << 10,
                },
                preallocate_bytes: args.log_preallocate_kib.clamp(4, 1 << 20) << 10,
            };
            let (store, report) = EmbeddedStore::open_with_options(&args.data_dir, options)
                .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
            tracing::info!(
                data_dir = %args.data_dir.display(),
                records = report.records_replayed,
                intents = report.intents,
                constraints = report.constraints,
                subscriptions = report.subscriptions,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store recovered"
            );
            let registry = Box::<server::pool::MemoryRegistry>::default();
            runtime.block_on(serve_dss(store, verifier, config, registry, &args))
        }
    }
}

/// Serves the DSS API over any store, with the expiry sweep.
async fn serve_dss<S: store::Store>(
    store: S,
    verifier: Verifier,
    config: Config,
    registry: Box<dyn server::pool::Registry>,
    args: &DssArgs,
) -> Result<()> {
    let metrics = server::install_metrics();
    let tls = args.tls.serving()?;
    let version = format!("deconflict-{}+{}", env!("CARGO_PKG_VERSION"), env!("DECONFLICT_COMMIT"));
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let limits = args.http.limits()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_endpoint = args.public_endpoint.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    registry.started(&public_endpoint);
    let pool = server::pool::Pool {
        dar_id: args.dar_id.clone(),
        instance_id: args.instance_id.clone().unwrap_or_else(|| format!("dss-{local}")),
        public_endpoint,
        registry,
    };
    let rate = |per_second: f64, burst: Option<f64>, factor: f64| -> Result<server::ratelimit::Rate> {
        let burst = burst.unwrap_or(per_second * factor).max(1.0);
        if !(per_second.is_finite() && per_second >= 0.0 && burst.is_finite()) {
            bail!("rate limits must be finite and not negative");
        }
        Ok(server::ratelimit::Rate { per_second, burst })
    };
    let limits_rate = server::ratelimit::RateLimits::new(
        rate(args.rate_limit_per_sub, args.rate_limit_burst, 2.0)?,
        rate(args.rate_limit_failed_auth_per_ip, None, 5.0)?,
    );
    let reports_dir = args.data_dir.join("reports");
    let reports = server::reports::ReportArchive::open(
        &reports_dir,
        server::reports::Retention {
            max_report_bytes: args.max_report_bytes.clamp(1024, MAX_REPORT_BYTES_CEILING),
            max_reports: args.max_reports.max(1),
            max_total_bytes: args.max_report_total_mib.max(1).saturating_mul(1024 * 1024),
            max_age: Duration::from_secs(args.report_retention_days.saturating_mul(86_400)),
        },
    )
    .with_context(|| format!("opening the report archive {}", reports_dir.display()))?;
    let state = Arc::new(AppState {
        metrics_here: args.metrics_listen.is_none(),
        basemap: Arc::new(args.map_tiles.open().await?),
        reports: Arc::new(reports),
        dss: Dss::new(store, Arc::new(SystemClock), config),
        verifier,
        metrics,
        version,
        pool,
        limits: limits_rate,
    });
    let beating = state.clone();
    tokio::spawn(async move { beating.pool.beat_forever().await });
    let sweeping = state.clone();
    let interval = Duration::from_secs(args.expiry_interval_secs.max(1));
    tokio::spawn(async move { sweeping.dss.expire_forever(interval).await });
    tracing::info!(%local, max_connections = limits.max_connections, "DSS listening");
    if let Some(addr) = args.metrics_listen {
        let metrics_listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding --metrics-listen {addr}"))?;
        let app = server::metrics_app(state.clone());
        // Logged, not printed: the one `listening on` line on stdout stays the API's.
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
        let limits = server::http::Limits::default();
        tokio::spawn(server::http::serve(metrics_listener, app, limits, None, std::future::pending(), Duration::ZERO));
    }
    serve("dss", listener, server::app(state), limits, tls).await
}

/// A verifier of `pems` and, with --jwks-url, of the identity providers' current keys.
fn verifier(pems: &[(String, Vec<u8>)], audiences: Vec<String>, jwks: &JwksArgs) -> Result<Verifier> {
    let built =
        if jwks.jwks_urls.is_empty() { Verifier::new(pems, audiences) } else { Verifier::with_jwks(pems, audiences) };
    built.map_err(anyhow::Error::msg)
}

/// Fetches the --jwks-url key sets into `keys` now (failing the start if one cannot be read),
/// then keeps them current in the background.
async fn start_jwks(jwks: &JwksArgs, trust: &client::tls::Trust, keys: Vec<Arc<auth::JwksKeys>>) -> Result<()> {
    if jwks.jwks_urls.is_empty() || keys.is_empty() {
        return Ok(());
    }
    let http = trust
        .client_builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()?;
    let n =
        client::jwks::fetch_all(&http, &jwks.jwks_urls, &keys).await.map_err(|e| anyhow::anyhow!("--jwks-url {e}"))?;
    tracing::info!(urls = %jwks.jwks_urls.join(", "), keys = n, "identity providers' keys fetched");
    tokio::spawn(client::jwks::keep_current(http, keys, jwks.options()));
    Ok(())
}

/// Reads PEM public keys, named by their paths for error messages.
fn read_keys(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    paths
        .iter()
        .map(|p| Ok((p.display().to_string(), std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)))
        .collect()
}

fn init_logs() {
    // Servers call `init_traced_logs`; the others have nothing to trace.
    let _ = init_traced_logs("deconflict", &client::tls::Trust::default());
}

/// Logs on stderr (`RUST_LOG`, default info; `--log-format`), and with `--otlp-endpoint` the
/// trace exporter, reporting as `service` and trusting `trust`; keep what it returns alive
/// for as long as spans should be sent.
fn init_traced_logs(service: &str, trust: &client::tls::Trust) -> Result<Option<otel::Exporter>> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // The exported spans are not log lines.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info".into())
        .add_directive(format!("{}=off", otel::TARGET).parse()?);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if LOG_JSON.get().copied().unwrap_or(false) {
        fmt.json().with_filter(filter).boxed()
    } else {
        // Colour codes only where someone reads them: a file or a pipe gets plain text.
        fmt.with_ansi(std::io::stderr().is_terminal()).with_filter(filter).boxed()
    };
    let endpoint = OTLP_ENDPOINT.get().cloned().flatten();
    let Some(endpoint) = endpoint else {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Ok(None);
    };
    let http = trust.client_builder().build()?;
    let (traces, exporter) = otel::layer(&endpoint, service, http).map_err(anyhow::Error::msg)?;
    let _ = tracing_subscriber::registry().with(fmt).with(traces).try_init();
    tracing::info!(%endpoint, service, "sending traces over OTLP");
    Ok(Some(exporter))
}

/// Prints the `... listening on http://ADDR` line tools wait for, and serves with `limits`
/// until SIGINT/SIGTERM, then lets requests in flight finish within the grace period.
async fn serve(
    what: &str,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: server::http::Limits,
    tls: Option<server::tls::Tls>,
) -> Result<()> {
    let local = listener.local_addr()?;
    // Listening for signals before saying we listen: a SIGTERM right after that line is seen.
    let shutdown = shutdown_signal();
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Started after the certificate's first load: a reload never races the listener's start.
    let _reloader = tls.as_ref().map(server::tls::Tls::spawn_reloader);
    println!("deconflict {what} listening on {scheme}://{local}");
    let grace = Duration::from_secs(SHUTDOWN_GRACE_S.get().copied().unwrap_or(10));
    if !server::http::serve(listener, app, limits, tls, shutdown, grace).await {
        tracing::warn!(what, grace_secs = grace.as_secs(), "grace period over: closed the remaining connections");
    }
    tracing::info!(what, "stopped");
    Ok(())
}

/// Limits for the participant's and the token server's listeners: the DSS's defaults, but no
/// request timeout (a plan waits on peers with its own timeouts, and abandoning it halfway
/// would leave its write-ahead record to the next reconciliation).
fn service_limits() -> server::http::Limits {
    server::http::Limits { request_timeout: None, ..server::http::Limits::default() }
}

fn run_auth(args: AuthArgs) -> Result<()> {
    init_logs();
    let (private, public) = match &args.key {
        Some(p) => (std::fs::read(p).with_context(|| format!("reading {}", p.display()))?, None),
        None => {
            eprintln!("WARNING: signing with the PUBLIC development key: for local development only.");
            (DEV_PRIVATE_KEY.as_bytes().to_vec(), Some(DEV_PUBLIC_KEY.to_owned()))
        }
    };
    let ts = server::token_server::TokenServer::new(&private, public).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        serve("auth", listener, server::token_server::app(Arc::new(ts)), service_limits(), None).await
    })
}

fn run_uss(args: UssArgs) -> Result<()> {
    let _traces = init_traced_logs(&format!("deconflict-uss-{}", args.client_id), &args.tls.trust()?)?;
    let pems = read_keys(&args.jwt_public_keys)?;
    if pems.is_empty() && args.jwks.jwks_urls.is_empty() {
        bail!("no --jwt-public-key or --jwks-url given: pass the PEM public key(s) or key set URL that sign peers' tokens");
    }
    // By default, what peers ask their token servers for when they call us: the host of our
    // base URL (of the listen address without one), and localhost.
    let audiences = if args.jwt_audiences.is_empty() {
        let host = match &args.base_url {
            Some(base) => url::Url::parse(base)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
                .with_context(|| format!("--base-url {base} names no host"))?,
            None => args.listen.ip().to_string(),
        };
        let mut audiences = vec![host, "localhost".to_owned()];
        audiences.dedup();
        audiences
    } else {
        args.jwt_audiences.clone()
    };
    let peer_verifier = verifier(&pems, audiences.clone(), &args.jwks)?;
    // Operators' tokens come from the peers' issuers unless the organization names its own.
    let operator_verifier = if args.operator_jwt_public_keys.is_empty() {
        verifier(&pems, audiences.clone(), &args.jwks)?
    } else {
        Verifier::new(&read_keys(&args.operator_jwt_public_keys)?, audiences.clone()).map_err(anyhow::Error::msg)?
    };
    // The qualification interface can end this organization's flights: it answers only the
    // test director named here, never whoever holds its scopes from the shared token issuer.
    if args.rid_testing && args.rid_testing_subjects.is_empty() {
        bail!(
            "--rid-testing needs --rid-testing-subject SUB (the test driver's token subject; repeatable): otherwise \
             any holder of rid.inject_test_data could make this participant announce flights"
        );
    }
    if args.flight_planning
        && args.flight_planning_subjects.is_empty()
        && args.flight_planning_jwt_public_keys.is_empty()
    {
        bail!(
            "--flight-planning needs --flight-planning-subject SUB (the test director's token subject; repeatable) \
             or --flight-planning-jwt-public-key PEM: otherwise any holder of its scopes, another USS included, \
             could clear this participant's area"
        );
    }
    let flight_planning_verifier = if args.flight_planning_jwt_public_keys.is_empty() {
        None
    } else {
        let pems = read_keys(&args.flight_planning_jwt_public_keys)?;
        Some(Verifier::new(&pems, audiences).map_err(anyhow::Error::msg)?)
    };
    let scopes = if args.scopes.is_empty() {
        vec![
            "utm.strategic_coordination".into(),
            "utm.constraint_processing".into(),
            "utm.conformance_monitoring_sa".into(),
        ]
    } else {
        args.scopes.clone()
    };
    if args.max_priority < 0 {
        bail!("--max-priority must be at least 0");
    }
    let crash_at = match args.crash_at.as_deref() {
        None => None,
        Some(s) => Some(
            uss::CrashPoint::parse(s)
                .with_context(|| format!("--crash-at {s}: expected after-write-ahead or after-dss-write"))?,
        ),
    };
    if args.operator_listen == args.listen && args.listen.port() != 0 {
        bail!("--operator-listen must differ from --listen: peers must never reach the operator interface");
    }
    let tls = args.tls.serving()?;
    let trust = args.tls.trust()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let jwks_keys = peer_verifier.jwks().into_iter().chain(operator_verifier.jwks()).collect();
        start_jwks(&args.jwks, &trust, jwks_keys).await?;
        let basemap = Arc::new(args.map_tiles.open().await?);
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let operator_listener = tokio::net::TcpListener::bind(args.operator_listen)
            .await
            .with_context(|| format!("binding the operator interface {}", args.operator_listen))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = args.base_url.clone().unwrap_or_else(|| {
            format!("{scheme}://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default())
        });
        let base_url = base_url.trim_end_matches('/').to_owned();
        model::check_base_url(&base_url).map_err(|e| anyhow::anyhow!("--base-url {e}"))?;
        let http = trust
            .client_builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(args.peer_timeout_secs.max(1)))
            .build()?;
        let tokens = uss::tokens::TokenSource::new(
            http,
            args.token_url.clone(),
            args.client_id.clone(),
            args.client_secret.clone(),
            scopes.clone(),
        );
        let config = uss::UssConfig {
            base_url: base_url.clone(),
            dss_url: args.dss_url.trim_end_matches('/').to_owned(),
            scopes,
            peer_timeout: Duration::from_secs(args.peer_timeout_secs.max(1)),
            max_priority: args.max_priority,
            operator_subjects: args.operator_subjects.clone(),
            telemetry_subjects: args.telemetry_subjects.clone(),
            notify_retry_for: Duration::from_secs(args.notify_retry_secs),
            crash_at,
            flight_planning: args.flight_planning,
            flight_planning_subjects: args.flight_planning_subjects.clone(),
            rid_testing: args.rid_testing,
            rid_testing_subjects: args.rid_testing_subjects.clone(),
            slow_answers: match &args.slow_answers {
                None => None,
                Some(spec) => {
                    let parsed = spec
                        .split_once(':')
                        .and_then(|(n, ms)| Some((n.parse::<u64>().ok()?, ms.parse::<u64>().ok()?)));
                    let (every, ms) =
                        parsed.with_context(|| format!("--slow-answers {spec}: expected EVERY:MS, e.g. 10:2000"))?;
                    Some((every.max(1), Duration::from_millis(ms)))
                }
            },
            monitor: uss::telemetry::MonitorConfig {
                contingent_after_s: args.contingent_after_secs.max(1),
                conforming_after_s: args.conforming_after_secs.max(1),
                telemetry_timeout_s: args.telemetry_timeout_secs.max(1),
            },
            allow_http_base_urls: args.allow_http_base_urls,
            trust,
        };
        let participant = uss::Uss::open(
            config,
            tokens,
            uss::Verifiers {
                peer: peer_verifier,
                operator: operator_verifier,
                flight_planning: flight_planning_verifier,
            },
            &args.data_dir,
        )
        .map_err(|e| anyhow::anyhow!("opening the participant's data directory {}: {e}", args.data_dir.display()))?;
        let reconciler = participant.clone();
        tokio::spawn(async move { reconciler.reconcile_until_done().await });
        participant.load_flights().await.map_err(|e| anyhow::anyhow!("loading the flights' telemetry: {e}"))?;
        participant.load_rid_tests().await.map_err(|e| anyhow::anyhow!("loading the Remote ID tests: {e}"))?;
        tokio::spawn(participant.clone().run_monitor());
        tracing::info!(client_id = %args.client_id, %base_url, "participant starting");
        let mut operator_app = uss::operator_app(participant.clone(), basemap);
        if let Some(handle) = server::install_metrics() {
            uss::describe_metrics();
            let metrics =
                axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(handle.render())));
            match args.metrics_listen {
                None => operator_app = operator_app.merge(metrics),
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("binding --metrics-listen {addr}"))?;
                    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
                    let (limits, never) = (server::http::Limits::default(), std::future::pending());
                    tokio::spawn(server::http::serve(listener, metrics, limits, None, never, Duration::ZERO));
                }
            }
        }
        // The peer line first (tools wait for it), then the operator interface's.
        let peer = serve("uss", listener, uss::peer_app(participant), service_limits(), tls);
        let operator = async {
            tokio::task::yield_now().await;
            serve("uss operator", operator_listener, operator_app, service_limits(), None).await
        };
        tokio::try_join!(peer, operator)?;
        Ok(())
    })
}

fn run_bench(args: BenchArgs) -> Result<()> {
    let mut config = if args.smoke { loadgen::BenchConfig::smoke() } else { loadgen::BenchConfig::full() };
    if args.workload != "all" {
        config.workloads = args.workload.split(',').map(|w| w.trim().to_owned()).collect();
    }
    config.duration_s = args.duration_secs.unwrap_or(config.duration_s);
    config.concurrency = args.concurrency.unwrap_or(config.concurrency).max(1);
    config.city_intents = args.city_intents.unwrap_or(config.city_intents);
    config.subscriptions = args.subscriptions.unwrap_or(config.subscriptions);
    config.restart_intents = args.restart_intents.unwrap_or(config.restart_intents);
    config.soak_s = args.soak_secs.unwrap_or(config.soak_s).max(1);
    config.rid_isas = args.rid_isas.unwrap_or(config.rid_isas).max(1);
    config.telemetry_flights = args.telemetry_flights.unwrap_or(config.telemetry_flights).max(1);
    config.telemetry_hz = args.telemetry_hz.unwrap_or(config.telemetry_hz).clamp(0.1, 100.0);
    config.rid_views = args.rid_views.unwrap_or(config.rid_views).max(1);
    config.national_scale = args.national_scale.unwrap_or(config.national_scale).clamp(0.01, 100.0);
    config.national_hour_s = args.national_hour_secs.unwrap_or(config.national_hour_s).clamp(0.1, 3600.0);
    config.store = args.store.clone();
    config.members = args.members.max(1);
    config.pool_reads = args.pool_reads.clone();
    config.peer_delay_ms = (args.peer_delay_ms.max(0.0), args.peer_jitter_ms.max(0.0).min(args.peer_delay_ms.max(0.0)));
    let exe = std::env::current_exe()?;
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; figures are only meaningful from `cargo run --release -- bench`");
    }
    let tmp = tempfile::tempdir()?;
    let work_dir = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let keys = loadgen::Keys {
        private_pem: DEV_PRIVATE_KEY.as_bytes().to_vec(),
        public_pem: DEV_PUBLIC_KEY.as_bytes().to_vec(),
    };
    println!(
        "deconflict bench: {} on {} cores",
        config.workloads.join(", "),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // One thread for the whole generator: it shares the cores with the DSS it measures, and a
    // single-threaded runtime drives its connections with no cross-thread wake-ups (measured:
    // city +8% over a two-thread runtime, preload 17 s -> 12 s).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reports = runtime.block_on(loadgen::run(exe, work_dir, keys, config.clone()))?;
    let json = serde_json::json!({
        "machine": {"cores": std::thread::available_parallelism().map_or(1, |n| n.get()), "os": std::env::consts::OS},
        "config": config,
        "workloads": reports,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    println!("\nreport written to {}", args.out.display());
    Ok(())
}

/// Registers for SIGINT and SIGTERM now (a signal arriving before the returned future is first
/// polled is not lost) and resolves when one arrives, logging which.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        let why = match (term, int) {
            (Some(mut term), Some(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        };
        #[cfg(not(unix))]
        let why = {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        };
        tracing::info!(signal = why, "shutdown requested: finishing requests in flight, then stopping");
    }
}
