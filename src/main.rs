//! `deconflict`: the command-line entry point. Glue only: parse flags, open the store, start
//! servers. Everything reusable lives in `crates/`.

/// mimalloc instead of glibc's allocator: in the city benchmark glibc's malloc/free (with its
/// fastbin consolidation) was about a tenth of the server's CPU; requests allocate and free many
/// small buffers (bodies, JSON, result vectors) across two worker threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

mod demo;
mod operator;
mod pool;
use clap::{Args, Parser, Subcommand};
use dss::{Config, Dss, SystemClock};
use server::auth::Verifier;
use server::AppState;
use store_embedded::EmbeddedStore;

/// The development signing key used by `deconflict token` and accepted by `--insecure-dev-auth`.
/// It is public (it is in this repository): never trust it in a real deployment.
pub(crate) const DEV_PRIVATE_KEY: &str = include_str!("keys/dev-private.pem");
pub(crate) const DEV_PUBLIC_KEY: &str = include_str!("keys/dev-public.pem");

#[derive(Parser)]
#[command(name = "deconflict", version, about = "ASTM F3548-21 strategic coordination: a DSS and its tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line, for log shippers).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Seconds servers let requests in flight finish after SIGINT/SIGTERM before closing the
    /// remaining connections (a client stuck halfway through its headers cannot hold the
    /// process up).
    #[arg(long, global = true, default_value_t = 10)]
    shutdown_grace_secs: u64,
}

/// The shutdown grace period chosen on the command line.
static SHUTDOWN_GRACE_S: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Reports cannot be larger than a request body.
const MAX_REPORT_BYTES_CEILING: usize = server::MAX_BODY_BYTES;

/// The log format chosen on the command line (read by `init_logs`).
static LOG_JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Command {
    /// Run a Discovery and Synchronization Service on the embedded durable store.
    Dss(Box<DssArgs>),
    /// Print a development access token signed with the development key (or --key).
    Token(TokenArgs),
    /// Run a development OAuth 2.0 token server that the DSS and participants can trust.
    Auth(AuthArgs),
    /// Run one organization's participant (USS): peer API, operator API, planner.
    Uss(Box<UssArgs>),
    /// Ask a participant to plan an operation described in a flight file (JSON).
    Plan(OperatorFileArgs),
    /// Ask a participant to activate one of its planned operations.
    Activate(OperatorIdArgs),
    /// Ask a participant to replace an operation's volumes with a flight file's.
    Modify(OperatorIdFileArgs),
    /// Declare an operation Nonconforming (off-nominal; needs the conformance monitoring scope).
    Nonconforming(OperatorIdArgs),
    /// Ask a participant to end an operation (removes its reference from the DSS).
    End(OperatorIdArgs),
    /// Show what a participant knows: its operations, others' it has seen, constraints,
    /// notifications received.
    Status(OperatorArgs),
    /// Publish a restricted zone (constraint) from a participant with the constraint
    /// management scope; the file has the flight file's shape.
    Constrain(OperatorFileArgs),
    /// Run the two-party demonstration on local ports and print its timeline.
    Demo(DemoArgs),
    /// Run a pool on this machine: a local etcd cluster and one DSS instance per member.
    Pool(PoolArgs),
    /// Benchmark a DSS: start one (this binary, on a fresh data directory, with real JWT
    /// verification) and drive it over HTTP from this process; print a table, write JSON.
    Bench(BenchArgs),
}

#[derive(Args)]
struct AuthArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// PEM private key signing the tokens (EC P-256 → ES256, RSA → RS256). Defaults to the
    /// public development key, which `--insecure-dev-auth` DSSs accept.
    #[arg(long, value_name = "PEM_FILE")]
    key: Option<PathBuf>,
}

#[derive(Args)]
struct UssArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Base URL peers use to reach this participant (default: http://<listen address>).
    #[arg(long)]
    base_url: Option<String>,
    /// Directory holding this participant's durable state.
    #[arg(long, default_value = "./deconflict-uss")]
    data_dir: PathBuf,
    /// The DSS to use.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    dss_url: String,
    /// OAuth 2.0 token endpoint (client credentials).
    #[arg(long, default_value = "http://127.0.0.1:8085/token")]
    token_url: String,
    /// Our client id: the `sub` of our tokens, our identity as a manager in the DSS.
    #[arg(long)]
    client_id: String,
    /// Client secret sent to the token endpoint, if it wants one.
    #[arg(long)]
    client_secret: Option<String>,
    /// PEM public key(s) that sign peers' tokens. Repeatable.
    #[arg(long = "jwt-public-key", value_name = "PEM_FILE")]
    jwt_public_keys: Vec<PathBuf>,
    /// Audience(s) accepted in peers' tokens (our host name). Repeatable; default localhost.
    #[arg(long = "jwt-audience")]
    jwt_audiences: Vec<String>,
    /// Scopes requested for our tokens. Repeatable. Default: strategic coordination,
    /// constraint processing, conformance monitoring.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Seconds a peer or the DSS has to answer (connect and whole answer).
    #[arg(long, default_value_t = 6)]
    peer_timeout_secs: u64,
    /// Address of the operator interface (`/operator/...`): never the peer listener. Every
    /// request needs a bearer token with the `deconflict.operator` scope. Keep it on loopback
    /// or a private network; `:0` picks a free port (the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:9101")]
    operator_listen: SocketAddr,
    /// PEM public key(s) that sign operator tokens. Repeatable. Default: the peers' keys
    /// (--jwt-public-key); give your organization's own issuer so that no token a peer can
    /// obtain works here.
    #[arg(long = "operator-jwt-public-key", value_name = "PEM_FILE")]
    operator_jwt_public_keys: Vec<PathBuf>,
    /// Token subjects (`sub`) allowed on the operator interface. Repeatable. Default: any
    /// holder of the `deconflict.operator` scope.
    #[arg(long = "operator-subject")]
    operator_subjects: Vec<String>,
    /// Highest priority an operator may give an operation.
    #[arg(long, default_value_t = 100)]
    max_priority: i32,
    /// Seconds during which failed notifications are retried (exponential backoff from 1 s).
    #[arg(long, default_value_t = 300)]
    notify_retry_secs: u64,
    /// Serve InterUSS's flight_planning v1 automated-testing interface at
    /// `{base}/flight_planning/v1` on the peer listener, to the test director named by
    /// `--flight-planning-subject` or `--flight-planning-jwt-public-key` only (one of them is
    /// required). Off by default.
    #[arg(long)]
    flight_planning: bool,
    /// A token subject allowed to drive the flight_planning interface (with its scopes
    /// `interuss.flight_planning.plan` / `.direct_automated_test`). Repeatable. Other subjects,
    /// another USS's included, get 403.
    #[arg(long = "flight-planning-subject", value_name = "SUB")]
    flight_planning_subjects: Vec<String>,
    /// PEM public key of an issuer whose tokens may drive the flight_planning interface
    /// whatever their subject (a test director's own issuer). Repeatable.
    #[arg(long = "flight-planning-jwt-public-key", value_name = "PEM")]
    flight_planning_jwt_public_keys: Vec<PathBuf>,
    /// Testing only: answer every EVERY-th request for details after MS milliseconds
    /// (`EVERY:MS`), to measure how a slow peer affects others' plans.
    #[arg(long, hide = true)]
    slow_answers: Option<String>,
    /// Testing only: die as `kill -9` would at this point of the next change
    /// (`after-write-ahead` or `after-dss-write`).
    #[arg(long, hide = true)]
    crash_at: Option<String>,
}

#[derive(Args)]
struct OperatorConn {
    /// The participant's operator interface, e.g. http://127.0.0.1:9101 (its
    /// --operator-listen address).
    #[arg(long)]
    uss: String,
    /// Bearer token with the `deconflict.operator` scope.
    #[arg(long, env = "DECONFLICT_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Args)]
struct OperatorArgs {
    #[command(flatten)]
    conn: OperatorConn,
}

#[derive(Args)]
struct OperatorFileArgs {
    #[command(flatten)]
    conn: OperatorConn,
    /// Flight file: {"volumes": [{"footprint": {"type": "Circle", "center": [lng, lat],
    /// "radius_m": 100} | {"type": "Polygon", "coordinates": [[[lng, lat], ...]]},
    /// "altitude_lower_m": 0, "altitude_upper_m": 120, "start": "+10m" | RFC 3339,
    /// "end": "+40m"}], "priority": 0}
    file: PathBuf,
}

#[derive(Args)]
struct OperatorIdArgs {
    #[command(flatten)]
    conn: OperatorConn,
    /// The operational intent id the participant returned when planning.
    id: String,
}

#[derive(Args)]
struct OperatorIdFileArgs {
    #[command(flatten)]
    conn: OperatorConn,
    id: String,
    file: PathBuf,
}

#[derive(Args)]
struct PoolArgs {
    /// etcd members (and DSS instances, one per member).
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Directory for the members' data and logs (a temporary one by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// PEM public key(s) the instances trust; without any, they accept the development key.
    #[arg(long = "jwt-public-key", value_name = "PEM_FILE")]
    jwt_public_keys: Vec<PathBuf>,
    /// Accepted token audiences (default localhost).
    #[arg(long = "jwt-audience")]
    jwt_audiences: Vec<String>,
    /// Start the instances with --etcd-read-leases (reads from the local index under read
    /// leases instead of a quorum read per request).
    #[arg(long)]
    etcd_read_leases: bool,
    /// Testing only: put a proxy on every link between members, so that a member can be cut
    /// off by writing its id (hex) to DIR/isolate-member, and healed by removing the file.
    #[arg(long, hide = true)]
    peer_proxies: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Leave the servers running after the scenario and print their addresses and tokens.
    #[arg(long)]
    keep_running: bool,
    /// With --keep-running: also write the addresses and tokens as JSON to this file once
    /// everything is up (for scripts and the map's browser tests).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// Workloads to run, comma-separated: busy-area, city, subscriptions, restart, soak, planning, or all.
    #[arg(long, default_value = "all")]
    workload: String,
    /// Seconds of measured load per workload (after its preload).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Concurrent planners/clients.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Live intents preloaded by `city` (through the API).
    #[arg(long)]
    city_intents: Option<usize>,
    /// Live subscriptions preloaded by `subscriptions`.
    #[arg(long)]
    subscriptions: Option<usize>,
    /// Intents on disk for the `restart` measurement.
    #[arg(long)]
    restart_intents: Option<usize>,
    /// Seconds of the `soak` workload: the city mix with log compactions during the run,
    /// reporting throughput, p99, log size and RSS per 10-second window (default 60).
    #[arg(long)]
    soak_secs: Option<u64>,
    /// A few seconds at tiny sizes (used by the test suite so the benchmark never rots).
    #[arg(long)]
    smoke: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-report.json")]
    out: PathBuf,
    /// Directory for the benchmark's data directories (a fresh temporary one by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// `etcd`: run busy-area and city against a pool (a local etcd cluster and one DSS instance
    /// per member, the load spread over them); the serial baseline stays embedded.
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
    store: String,
    /// etcd members (and DSS instances) of the benchmarked pool.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// How the benchmarked pool's instances make reads consistent: `lease` (local reads under
    /// read leases, as `dss --etcd-read-leases`) or `quorum` (a quorum read per operation).
    #[arg(long, default_value = "lease", value_parser = ["lease", "quorum"])]
    pool_reads: String,
    /// With --store etcd, busy-area runs once more with this one-way delay (ms) between the
    /// members, injected by a TCP proxy in the bench (the reference's inter-organization figure).
    #[arg(long, default_value_t = 16.5)]
    peer_delay_ms: f64,
    /// +/- jitter (ms, uniform) on that delay.
    #[arg(long, default_value_t = 7.5)]
    peer_jitter_ms: f64,
}

#[derive(Args)]
struct DssArgs {
    /// Address to listen on (host:port).
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    /// Directory holding the durable store (created if missing).
    #[arg(long, default_value = "./deconflict-data")]
    data_dir: PathBuf,
    /// PEM public key (`BEGIN PUBLIC KEY`, RSA or EC P-256) that signs accepted access tokens.
    /// Repeat for several issuers.
    #[arg(long = "jwt-public-key", value_name = "PEM_FILE")]
    jwt_public_keys: Vec<PathBuf>,
    /// Audience (`aud`) accepted in access tokens; ecosystem clients use the DSS's host name.
    /// Repeat for several. Defaults to `localhost`.
    #[arg(long = "jwt-audience", value_name = "AUDIENCE")]
    jwt_audiences: Vec<String>,
    /// Accept tokens signed by the public development key that `deconflict token` uses.
    /// For local development only: anyone can mint such tokens.
    #[arg(long)]
    insecure_dev_auth: bool,
    /// Seconds an entity is kept after its end time before the DSS removes it (default 24 h, so
    /// an owner can still read, update or delete an intent after its flight).
    #[arg(long, default_value_t = 86_400)]
    retention_secs: i64,
    /// `group` (default) shares disk syncs among concurrent commits; `serial` makes each commit
    /// hold a global lock through its own sync (a baseline for benchmarks, not for production).
    #[arg(long, default_value = "group", value_parser = ["group", "serial"])]
    commit_mode: String,
    /// The embedded store compacts its log while serving once the log holds this many times
    /// the live data (the last snapshot)...
    #[arg(long, default_value_t = store_embedded::CompactionPolicy::default().live_factor)]
    compact_live_factor: u64,
    /// ...or this many MiB in any case...
    #[arg(long, default_value_t = store_embedded::CompactionPolicy::default().max_log_bytes >> 20)]
    compact_max_log_mib: u64,
    /// ...but never for less than this many KiB of log.
    #[arg(long, default_value_t = store_embedded::CompactionPolicy::default().min_log_bytes >> 10)]
    compact_min_log_kib: u64,
    /// KiB of log space the embedded store allocates ahead of its records (a full disk is
    /// noticed, and writes refused, when an allocation fails).
    #[arg(long, default_value_t = store_embedded::PREALLOCATE_BYTES >> 10, hide = true)]
    log_preallocate_kib: u64,
    /// Seconds between two sweeps that remove expired entities.
    #[arg(long, default_value_t = 60)]
    expiry_interval_secs: u64,
    /// Where the airspace record lives: `embedded` (this process's data directory) or `etcd`
    /// (a cluster shared by a pool of DSS instances, see --etcd-endpoints).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
    store: String,
    /// etcd client URLs for --store etcd (comma-separated or repeated), e.g.
    /// http://127.0.0.1:2379,http://127.0.0.1:22379.
    #[arg(long = "etcd-endpoints", value_name = "URLS")]
    etcd_endpoints: Vec<String>,
    /// Prefix of every key the DSS writes in etcd (one pool per prefix).
    #[arg(long, default_value = "/deconflict/")]
    etcd_prefix: String,
    /// PEM CA certificate that signed the etcd members' client certificates (https endpoints).
    #[arg(long, value_name = "PEM_FILE")]
    etcd_ca: Option<PathBuf>,
    /// PEM client certificate presented to etcd (members started with --client-cert-auth).
    #[arg(long, value_name = "PEM_FILE")]
    etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(long, value_name = "PEM_FILE")]
    etcd_key: Option<PathBuf>,
    /// With --store etcd: answer reads from the local index under an etcd read lease instead of
    /// a quorum read per request; every writer of the pool then waits for this instance to
    /// confirm each write before acknowledging it (docs/POOL.md). The other instances reach this
    /// one at --etcd-ack-url.
    #[arg(long)]
    etcd_read_leases: bool,
    /// Base URL the pool's other instances reach this one at for write confirmations
    /// (GET /deconflict/v1/pool/applied); default the --public-endpoint.
    #[arg(long, value_name = "URL")]
    etcd_ack_url: Option<String>,
    /// This instance's id in the pool (`/aux/v1/pool/dss_instances`); default dss-<address>.
    #[arg(long)]
    instance_id: Option<String>,
    /// The URL clients reach this instance at, as the pool reports it; default http://<address>.
    #[arg(long)]
    public_endpoint: Option<String>,
    /// The DSS Airspace Representation id every instance of the pool reports (`/aux/v1/pool`).
    #[arg(long, default_value = "deconflict")]
    dar_id: String,
    /// Longest access-token lifetime accepted (`exp - iat`, or `exp - now` without `iat`); the
    /// standard's tokens are short lived. Tokens not yet valid (`nbf`), issued in the future
    /// (`iat`) or naming critical header extensions (`crit`) are always refused.
    #[arg(long, default_value_t = auth::DEFAULT_MAX_LIFETIME_S)]
    max_token_lifetime_secs: u64,
    /// Enforce the spec's text that asking for constraint notifications (`notify_for_constraints`
    /// in a subscription or an intent's `new_subscription`) needs `utm.constraint_processing`.
    /// By default the DSS accepts it with `utm.strategic_coordination` alone, as the reference
    /// DSS does and ecosystem clients expect.
    #[arg(long)]
    strict_scopes: bool,
    /// Discovery's generosity, in metres: area queries and subscriber lists match footprints
    /// whose convex hulls, each padded by this margin, meet (the standard's qualification tools
    /// expect interlocking flights to discover each other). Key checks stay exact.
    #[arg(long, default_value_t = dss::DEFAULT_RELEVANCE_MARGIN_M)]
    relevance_margin_m: f64,
    /// The scope a token needs to read the airspace map at `/map` (references only, never an
    /// OVN): one of the scopes this system knows, e.g. `deconflict.map.read` for an authority,
    /// or `utm.strategic_coordination` to let every participant look.
    #[arg(long, default_value = "deconflict.map.read")]
    map_scope: String,
    #[command(flatten)]
    http: HttpLimitArgs,
    /// Requests per second allowed per token subject (`sub`), 0 for no limit; beyond it and the
    /// burst, requests get 429 with `Retry-After`.
    #[arg(long, default_value_t = 1000.0)]
    rate_limit_per_sub: f64,
    /// Requests a subject may make at once before `--rate-limit-per-sub` applies (default: two
    /// seconds' worth).
    #[arg(long)]
    rate_limit_burst: Option<f64>,
    /// Requests per second with an invalid or missing token allowed per client address, 0 for
    /// no limit; past it (burst 5x) that address's requests get 429 before any token is checked.
    /// Generous by default (a signature check costs tens of microseconds): it exists so that a
    /// flood of forged tokens cannot buy signature checks, not to trip clients' negative tests.
    #[arg(long, default_value_t = 200.0)]
    rate_limit_failed_auth_per_ip: f64,
    /// Live operational intents one manager (token `sub`) may hold; past it, 429.
    #[arg(long, default_value_t = dss::Quotas::default().max_intents)]
    max_intents_per_manager: usize,
    /// Live constraints one manager may hold; past it, 429.
    #[arg(long, default_value_t = dss::Quotas::default().max_constraints)]
    max_constraints_per_manager: usize,
    /// Live subscriptions (implicit ones included) one manager may hold; past it, 429.
    #[arg(long, default_value_t = dss::Quotas::default().max_subscriptions)]
    max_subscriptions_per_manager: usize,
    /// Vertices over all of one manager's intents, constraints and subscriptions (a circle
    /// counts as one); past it, 429.
    #[arg(long, default_value_t = dss::Quotas::default().max_vertices)]
    max_vertices_per_manager: usize,
    /// Largest report (`POST /dss/v1/reports`) accepted, in bytes; reports are kept in
    /// DATA_DIR/reports.
    #[arg(long, default_value_t = server::reports::Retention::default().max_report_bytes)]
    max_report_bytes: usize,
    /// Reports kept per reporter (token subject); a reporter past it loses its own oldest, never
    /// another's.
    #[arg(long, default_value_t = server::reports::Retention::default().max_reports)]
    max_reports: usize,
    /// Mebibytes of reports kept over all reporters; past it the reporter holding the most
    /// loses its oldest first.
    #[arg(long, default_value_t = server::reports::Retention::default().max_total_bytes / (1024 * 1024))]
    max_report_total_mib: u64,
    /// Days a report is kept.
    #[arg(long, default_value_t = 30)]
    report_retention_days: u64,
}

/// Connection hygiene of the DSS listener (see `server::http`).
#[derive(Args, Clone)]
struct HttpLimitArgs {
    /// Seconds a client has, from the first byte of a request head, to send the whole head;
    /// slower clients are disconnected.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and nothing received.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Seconds a request may take before it is answered 503 (the reference DSS uses 10 s).
    #[arg(long, default_value_t = 10)]
    request_timeout_secs: u64,
    /// Seconds a client has, from the end of its request head, to send the whole body; a body
    /// still arriving then is answered 408 and the connection closed. While its body is
    /// arriving a connection counts as idle for eviction at the connection cap.
    #[arg(long, default_value_t = 10)]
    body_timeout_secs: u64,
    /// Concurrent client connections; at the cap, the connection idle for longest is closed to
    /// admit a new one. Defaults to the open-file limit (raised to its hard limit at start-up)
    /// less 64.
    #[arg(long)]
    max_connections: Option<usize>,
}

impl HttpLimitArgs {
    fn limits(&self) -> Result<server::http::Limits> {
        if self.header_timeout_secs == 0
            || self.idle_timeout_secs == 0
            || self.request_timeout_secs == 0
            || self.body_timeout_secs == 0
        {
            bail!(
                "--header-timeout-secs, --idle-timeout-secs, --request-timeout-secs and --body-timeout-secs must be at least 1"
            );
        }
        if self.max_connections == Some(0) {
            bail!("--max-connections must be at least 1");
        }
        Ok(server::http::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            request_timeout: Some(Duration::from_secs(self.request_timeout_secs)),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: self.max_connections.unwrap_or_else(server::http::default_max_connections),
        })
    }
}

#[derive(Args)]
struct TokenArgs {
    /// The USS identity (`sub` claim).
    #[arg(long)]
    sub: String,
    /// A scope to grant, e.g. utm.strategic_coordination. Repeat for several.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// The audience (`aud` claim): the host name of the server the token is for.
    #[arg(long, default_value = "localhost")]
    audience: String,
    /// Lifetime of the token in seconds (the standard allows at most one hour).
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Sign with this PEM private key (RSA signs RS256, EC signs ES256) instead of the
    /// development key.
    #[arg(long, value_name = "PEM_FILE")]
    key: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = LOG_JSON.set(cli.log_format == "json");
    let _ = SHUTDOWN_GRACE_S.set(cli.shutdown_grace_secs);
    // Every server here holds one descriptor per connection: use what the system allows.
    server::http::raise_file_limit();
    match cli.command {
        Command::Dss(args) => run_dss(*args),
        Command::Bench(args) => run_bench(args),
        Command::Auth(args) => run_auth(args),
        Command::Uss(args) => run_uss(*args),
        Command::Plan(a) => operator::call("POST", &a.conn, "/operator/plan", Some(&a.file)),
        Command::Activate(a) => operator::call("POST", &a.conn, &format!("/operator/intents/{}/activate", a.id), None),
        Command::Modify(a) => {
            operator::call("POST", &a.conn, &format!("/operator/intents/{}/modify", a.id), Some(&a.file))
        }
        Command::Nonconforming(a) => {
            operator::call("POST", &a.conn, &format!("/operator/intents/{}/nonconforming", a.id), None)
        }
        Command::End(a) => operator::call("POST", &a.conn, &format!("/operator/intents/{}/end", a.id), None),
        Command::Status(a) => operator::call("GET", &a.conn, "/operator/status", None),
        Command::Constrain(a) => operator::call("POST", &a.conn, "/operator/constraints", Some(&a.file)),
        Command::Demo(args) => demo::run(args.keep_running, args.ready_file.as_deref()),
        Command::Pool(a) => pool::run(pool::PoolOptions {
            members: a.members,
            dir: a.dir,
            jwt_public_keys: a.jwt_public_keys,
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
    init_logs();
    let mut pems = read_keys(&args.jwt_public_keys)?;
    if args.insecure_dev_auth {
        tracing::warn!("--insecure-dev-auth: accepting tokens signed by the PUBLIC development key");
        tracing::warn!("anyone can mint such tokens: never use --insecure-dev-auth outside local development");
        pems.push(("development key".into(), DEV_PUBLIC_KEY.as_bytes().to_vec()));
    } else if pems.is_empty() {
        bail!("no --jwt-public-key given: pass the PEM public key(s) of your token issuer, or --insecure-dev-auth for local development");
    }
    let audiences =
        if args.jwt_audiences.is_empty() { vec!["localhost".to_owned()] } else { args.jwt_audiences.clone() };
    let verifier =
        Verifier::new(&pems, audiences).map_err(anyhow::Error::msg)?.with_max_lifetime(args.max_token_lifetime_secs);

    if !(args.relevance_margin_m.is_finite() && (0.0..=10_000.0).contains(&args.relevance_margin_m)) {
        bail!("--relevance-margin-m must be between 0 and 10000 metres");
    }
    let map_scope = auth::Scope::parse(&args.map_scope).with_context(|| {
        format!("--map-scope `{}` is not a scope this system knows (e.g. deconflict.map.read)", args.map_scope)
    })?;
    let config = Config {
        map_scope,
        retention_s: args.retention_secs.max(0),
        strict_scopes: args.strict_scopes,
        relevance_margin_m: args.relevance_margin_m,
        quotas: dss::Quotas {
            max_intents: args.max_intents_per_manager,
            max_constraints: args.max_constraints_per_manager,
            max_subscriptions: args.max_subscriptions_per_manager,
            max_vertices: args.max_vertices_per_manager,
        },
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
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
    let version = format!("deconflict-{}+{}", env!("CARGO_PKG_VERSION"), env!("DECONFLICT_COMMIT"));
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let limits = args.http.limits()?;
    let public_endpoint = args.public_endpoint.clone().unwrap_or_else(|| format!("http://{local}"));
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
    serve("dss", listener, server::app(state), limits).await
}

/// Reads PEM public keys, named by their paths for error messages.
fn read_keys(paths: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    paths
        .iter()
        .map(|p| Ok((p.display().to_string(), std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)))
        .collect()
}

fn init_logs() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if LOG_JSON.get().copied().unwrap_or(false) {
        builder.json().init();
    } else {
        // Colour codes only where someone reads them: a file or a pipe gets plain text.
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Prints the `... listening on http://ADDR` line tools wait for, and serves with `limits`
/// until SIGINT/SIGTERM, then lets requests in flight finish within the grace period.
async fn serve(
    what: &str,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: server::http::Limits,
) -> Result<()> {
    let local = listener.local_addr()?;
    // Listening for signals before saying we listen: a SIGTERM right after that line is seen.
    let shutdown = shutdown_signal();
    println!("deconflict {what} listening on http://{local}");
    let grace = Duration::from_secs(SHUTDOWN_GRACE_S.get().copied().unwrap_or(10));
    if !server::http::serve(listener, app, limits, shutdown, grace).await {
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
        serve("auth", listener, server::token_server::app(Arc::new(ts)), service_limits()).await
    })
}

fn run_uss(args: UssArgs) -> Result<()> {
    init_logs();
    let pems = read_keys(&args.jwt_public_keys)?;
    if pems.is_empty() {
        bail!("no --jwt-public-key given: pass the PEM public key(s) that sign peers' tokens");
    }
    let audiences =
        if args.jwt_audiences.is_empty() { vec!["localhost".to_owned()] } else { args.jwt_audiences.clone() };
    let peer_verifier = Verifier::new(&pems, audiences.clone()).map_err(anyhow::Error::msg)?;
    let operator_pems = if args.operator_jwt_public_keys.is_empty() {
        pems.clone()
    } else {
        read_keys(&args.operator_jwt_public_keys)?
    };
    let operator_verifier = Verifier::new(&operator_pems, audiences.clone()).map_err(anyhow::Error::msg)?;
    // The qualification interface can end this organization's flights: it answers only the
    // test director named here, never whoever holds its scopes from the shared token issuer.
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let operator_listener = tokio::net::TcpListener::bind(args.operator_listen)
            .await
            .with_context(|| format!("binding the operator interface {}", args.operator_listen))?;
        let base_url = args
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default()));
        let base_url = base_url.trim_end_matches('/').to_owned();
        model::check_base_url(&base_url).map_err(|e| anyhow::anyhow!("--base-url {e}"))?;
        let http = reqwest::Client::builder()
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
            notify_retry_for: Duration::from_secs(args.notify_retry_secs),
            crash_at,
            flight_planning: args.flight_planning,
            flight_planning_subjects: args.flight_planning_subjects.clone(),
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
        tracing::info!(client_id = %args.client_id, %base_url, "participant starting");
        let operator_app = uss::operator_app(participant.clone());
        // The peer line first (tools wait for it), then the operator interface's.
        let peer = serve("uss", listener, uss::peer_app(participant), service_limits());
        let operator = async {
            tokio::task::yield_now().await;
            serve("uss operator", operator_listener, operator_app, service_limits()).await
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
