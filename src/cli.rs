//! The command line: every subcommand and flag of `deconflict`, with its help text. Names,
//! flags and defaults here are a contract (tools and acceptance tests rely on them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "deconflict",
    version,
    about = "ASTM F3548-21 strategic coordination: a DSS and its tools",
    after_help = "Every flag of dss, uss, pool and auth can also be set in the environment as DECONFLICT_<FLAG> \
                  (DECONFLICT_JWT_AUDIENCE=a.example,b.example) or in the TOML file of --config \
                  (jwt-audience = [\"a.example\"]; a [dss] table for one command). A flag given here wins over \
                  the environment, which wins over the file."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// A TOML file of flags for dss, uss, pool or auth (`listen = "0.0.0.0:8082"`; keys are the
    /// flags' long names; a `[dss]`-style table applies to that command only). Flags and
    /// DECONFLICT_<FLAG> environment variables win over it.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line, for log shippers).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    /// Send OpenTelemetry traces (OTLP over HTTP, protobuf) to this collector, e.g.
    /// http://127.0.0.1:4318 (`/v1/traces` is added): a span per request served by `dss` or
    /// `uss` and per call a participant makes, joined across processes by `traceparent`.
    /// The collector is trusted with the same roots and --ca-cert as other calls.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) otlp_endpoint: Option<String>,
    /// Seconds servers let requests in flight finish after SIGINT/SIGTERM before closing the
    /// remaining connections (a client stuck halfway through its headers cannot hold the
    /// process up).
    #[arg(long, global = true, default_value_t = 10)]
    pub(crate) shutdown_grace_secs: u64,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a Discovery and Synchronization Service on the embedded durable store.
    Dss(Box<DssArgs>),
    /// Print a development access token signed with the development key (or --key).
    Token(TokenArgs),
    /// Run a development OAuth 2.0 token server that the DSS and participants can trust.
    Auth(AuthArgs),
    /// Run one organization's participant (USS): peer API, operator API, planner.
    Uss(Box<UssArgs>),
    /// Ask a participant to plan an operation described in a flight file (JSON).
    Plan(PlanArgs),
    /// Ask a participant to activate one of its planned operations.
    Activate(OperatorIdArgs),
    /// Ask a participant to replace an operation's volumes with a flight file's.
    Modify(OperatorIdFileArgs),
    /// Declare an operation Nonconforming (off-nominal; needs the conformance monitoring scope).
    Nonconforming(OperatorIdArgs),
    /// Ask a participant to end an operation (removes its reference from the DSS).
    End(OperatorIdArgs),
    /// Replay a recorded track (one position per line) into a participant's operation.
    Telemetry(TelemetryArgs),
    /// Show what a participant knows: its operations, others' it has seen, constraints,
    /// notifications received (as tables; --json for the raw form).
    Status(StatusArgs),
    /// Publish a restricted zone (constraint) from a participant with the constraint
    /// management scope; the file has the flight file's shape.
    Constrain(OperatorFileArgs),
    /// Run the two-party demonstration on local ports and print its timeline.
    Demo(DemoArgs),
    /// Run a pool on this machine: a local etcd cluster and one DSS instance per member.
    Pool(PoolArgs),
    /// Benchmark a DSS: start one (this binary, on a fresh data directory, with real JWT
    /// verification) and drive it over HTTP from this process; print a table, write JSON.
    Bench(Box<BenchArgs>),
}

#[derive(Args)]
pub(crate) struct AuthArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8085")]
    pub(crate) listen: SocketAddr,
    /// PEM private key signing the tokens (EC P-256 → ES256, RSA → RS256). Defaults to the
    /// public development key, which `--insecure-dev-auth` DSSs accept.
    #[arg(long, value_name = "PEM_FILE")]
    pub(crate) key: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct UssArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub(crate) listen: SocketAddr,
    /// Base URL peers use to reach this participant (default: http://<listen address>, or
    /// https:// with --tls-cert).
    #[arg(long)]
    pub(crate) base_url: Option<String>,
    /// Call peers whose base URL (as the DSS records it) is `http://`. Without it only
    /// `https://` peers are called, and an operation whose manager cannot be reached that way
    /// stays unverifiable (it blocks plans near it). For local ecosystems and tests.
    #[arg(long)]
    pub(crate) allow_http_base_urls: bool,
    /// Directory holding this participant's durable state.
    #[arg(long, default_value = "./deconflict-uss")]
    pub(crate) data_dir: PathBuf,
    /// The DSS to use.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub(crate) dss_url: String,
    /// OAuth 2.0 token endpoint (client credentials).
    #[arg(long, default_value = "http://127.0.0.1:8085/token")]
    pub(crate) token_url: String,
    /// Our client id: the `sub` of our tokens, our identity as a manager in the DSS.
    #[arg(long)]
    pub(crate) client_id: String,
    /// Client secret sent to the token endpoint, if it wants one.
    #[arg(long)]
    pub(crate) client_secret: Option<String>,
    /// PEM public key(s) that sign peers' tokens. Repeatable.
    #[arg(long = "jwt-public-key", value_name = "PEM_FILE")]
    pub(crate) jwt_public_keys: Vec<PathBuf>,
    /// Audience(s) accepted in peers' tokens (our host name). Repeatable; default the host of
    /// --base-url (of --listen without one) and localhost.
    #[arg(long = "jwt-audience")]
    pub(crate) jwt_audiences: Vec<String>,
    /// Scopes requested for our tokens. Repeatable. Default: strategic coordination,
    /// constraint processing, conformance monitoring.
    #[arg(long = "scope")]
    pub(crate) scopes: Vec<String>,
    /// Seconds a peer or the DSS has to answer (connect and whole answer).
    #[arg(long, default_value_t = 6)]
    pub(crate) peer_timeout_secs: u64,
    /// Address of the operator interface (`/operator/...`): never the peer listener. Every
    /// request needs a bearer token with the `deconflict.operator` scope. Keep it on loopback
    /// or a private network; `:0` picks a free port (the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub(crate) operator_listen: SocketAddr,
    /// Serve the participant's Prometheus metrics (`/metrics`: plans and refusals,
    /// notifications delivered and retried, latencies of peers and the DSS) on this address
    /// instead of the operator listener, where they need no token.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// PEM public key(s) that sign operator tokens. Repeatable. Default: the peers' keys
    /// (--jwt-public-key); give your organization's own issuer so that no token a peer can
    /// obtain works here.
    #[arg(long = "operator-jwt-public-key", value_name = "PEM_FILE")]
    pub(crate) operator_jwt_public_keys: Vec<PathBuf>,
    /// Token subjects (`sub`) allowed on the operator interface. Repeatable. Default: any
    /// holder of the `deconflict.operator` scope.
    #[arg(long = "operator-subject")]
    pub(crate) operator_subjects: Vec<String>,
    /// Token subjects (`sub`) allowed to report positions with the `deconflict.telemetry`
    /// scope (ground stations). Repeatable. When this or --operator-subject is given, only
    /// these subjects and the operators may report; otherwise any holder of the scope.
    #[arg(long = "telemetry-subject")]
    pub(crate) telemetry_subjects: Vec<String>,
    /// Highest priority an operator may give an operation.
    #[arg(long, default_value_t = 100)]
    pub(crate) max_priority: i32,
    /// Seconds during which failed notifications are retried (exponential backoff from 1 s).
    #[arg(long, default_value_t = 300)]
    pub(crate) notify_retry_secs: u64,
    /// Serve InterUSS's flight_planning v1 automated-testing interface at
    /// `{base}/flight_planning/v1` on the peer listener, to the test director named by
    /// `--flight-planning-subject` or `--flight-planning-jwt-public-key` only (one of them is
    /// required). Off by default.
    #[arg(long)]
    pub(crate) flight_planning: bool,
    /// A token subject allowed to drive the flight_planning interface (with its scopes
    /// `interuss.flight_planning.plan` / `.direct_automated_test`). Repeatable. Other subjects,
    /// another USS's included, get 403.
    #[arg(long = "flight-planning-subject", value_name = "SUB")]
    pub(crate) flight_planning_subjects: Vec<String>,
    /// Serve InterUSS's Remote ID automated-testing interfaces on the peer listener:
    /// injection at `{base}/ridsp/injection` (scope `rid.inject_test_data`) and observation at
    /// `{base}/riddp/observation` (scope `dss.read.identification_service_areas`), to the
    /// subjects of --rid-testing-subject only (one is required). Off by default.
    #[arg(long)]
    pub(crate) rid_testing: bool,
    /// A token subject allowed to drive the Remote ID test interfaces. Repeatable.
    #[arg(long = "rid-testing-subject", value_name = "SUB")]
    pub(crate) rid_testing_subjects: Vec<String>,
    /// PEM public key of an issuer whose tokens may drive the flight_planning interface
    /// whatever their subject (a test director's own issuer). Repeatable.
    #[arg(long = "flight-planning-jwt-public-key", value_name = "PEM")]
    pub(crate) flight_planning_jwt_public_keys: Vec<PathBuf>,
    /// Conformance monitoring: seconds an operation stays Nonconforming while its aircraft is
    /// still outside its volumes (or silent) before it becomes Contingent.
    #[arg(long, default_value_t = 30)]
    pub(crate) contingent_after_secs: i64,
    /// Conformance monitoring: seconds an automatically Nonconforming operation's aircraft
    /// must be back inside its volumes, steadily, before it is Activated again.
    #[arg(long, default_value_t = 10)]
    pub(crate) conforming_after_secs: i64,
    /// Conformance monitoring: seconds without a position after which a flight that reported
    /// positions becomes Nonconforming ("lost position").
    #[arg(long, default_value_t = 10)]
    pub(crate) telemetry_timeout_secs: i64,
    /// Testing only: answer every EVERY-th request for details after MS milliseconds
    /// (`EVERY:MS`), to measure how a slow peer affects others' plans.
    #[arg(long, hide = true)]
    pub(crate) slow_answers: Option<String>,
    /// Testing only: die as `kill -9` would at this point of the next change
    /// (`after-write-ahead` or `after-dss-write`).
    #[arg(long, hide = true)]
    pub(crate) crash_at: Option<String>,
    /// Identity providers whose keys sign peers' (and, without --operator-jwt-public-key,
    /// operators') tokens.
    #[command(flatten)]
    pub(crate) jwks: JwksArgs,
    #[command(flatten)]
    pub(crate) map_tiles: MapTilesArgs,
    // Last: its heading applies to every flag after it.
    /// The peer listener's TLS (the operator interface stays plain HTTP: keep it on loopback
    /// or behind your own proxy), and the CAs trusted when calling out.
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Args)]
pub(crate) struct OperatorConn {
    /// The participant's operator interface, e.g. http://127.0.0.1:9101 (its
    /// --operator-listen address).
    #[arg(long)]
    pub(crate) uss: String,
    /// Bearer token with the `deconflict.operator` scope.
    #[arg(long, env = "DECONFLICT_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// A PEM CA certificate to trust for an https operator interface, besides the public
    /// roots. Repeatable.
    #[arg(long = "ca-cert", value_name = "PEM_FILE")]
    pub(crate) ca_certs: Vec<PathBuf>,
}

impl OperatorConn {
    /// An HTTP client for the operator interface, trusting --ca-cert, with `timeout`.
    pub(crate) fn client(&self, timeout: Duration) -> Result<reqwest::Client> {
        let trust =
            client::tls::Trust::from_pem_files(&self.ca_certs).map_err(|e| anyhow::anyhow!("--ca-cert: {e}"))?;
        Ok(trust.client_builder().timeout(timeout).build()?)
    }
}

#[derive(Args)]
pub(crate) struct OperatorArgs {
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
}

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
    /// Print the participant's status as it answers it (JSON), not as tables.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
    /// When the plan is refused with a proposal (a later start or another altitude band that
    /// clears every conflict), plan the flight moved that way at once.
    #[arg(long)]
    pub(crate) accept_proposal: bool,
    /// The flight file (see `constrain --help` for its shape).
    pub(crate) file: PathBuf,
}

#[derive(Args)]
pub(crate) struct OperatorFileArgs {
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
    /// Flight file: {"altitude_reference": "W84" | "MSL", "volumes": [{"footprint": {"type": "Circle", "center": [lng, lat],
    /// "radius_m": 100} | {"type": "Polygon", "coordinates": [[[lng, lat], ...]]},
    /// "altitude_lower_m": 0, "altitude_upper_m": 120, "start": "+10m" | RFC 3339,
    /// "end": "+40m"}], "priority": 0}
    pub(crate) file: PathBuf,
}

#[derive(Args)]
pub(crate) struct OperatorIdArgs {
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
    /// The operational intent id the participant returned when planning.
    pub(crate) id: String,
}

#[derive(Args)]
pub(crate) struct TelemetryArgs {
    /// The participant's operator interface and a token with `deconflict.operator` or
    /// `deconflict.telemetry`.
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
    /// The operational intent the aircraft flies (Activated).
    pub(crate) id: String,
    /// Track file: one position per line, {"time": RFC 3339, "lat", "lng", "alt_m" (metres
    /// above the WGS84 ellipsoid), "accuracy_h_m", "accuracy_v_m", "speed_mps"?, "track_deg"?}.
    pub(crate) track: PathBuf,
    /// Replay this many times faster than the track's own pace.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) speed: f64,
    /// Shift the track's times so that it starts now (each position stamped when it is sent).
    #[arg(long)]
    pub(crate) now: bool,
}

#[derive(Args)]
pub(crate) struct OperatorIdFileArgs {
    #[command(flatten)]
    pub(crate) conn: OperatorConn,
    pub(crate) id: String,
    pub(crate) file: PathBuf,
}

#[derive(Args)]
pub(crate) struct PoolArgs {
    /// etcd members (and DSS instances, one per member).
    #[arg(long, default_value_t = 3)]
    pub(crate) members: usize,
    /// Directory for the members' data and logs (a temporary one by default).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// PEM public key(s) the instances trust; without any (and no --jwks-url), they accept the
    /// development key.
    #[arg(long = "jwt-public-key", value_name = "PEM_FILE")]
    pub(crate) jwt_public_keys: Vec<PathBuf>,
    /// An identity provider's key set the instances trust (as `dss --jwks-url`). Repeatable.
    #[arg(long = "jwks-url", value_name = "URL")]
    pub(crate) jwks_urls: Vec<String>,
    /// A PEM CA certificate the instances trust when calling out (key sets, each other, the
    /// trace collector), as `dss --ca-cert`. Repeatable.
    #[arg(long = "ca-cert", value_name = "PEM_FILE")]
    pub(crate) ca_certs: Vec<PathBuf>,
    /// Accepted token audiences (default localhost).
    #[arg(long = "jwt-audience")]
    pub(crate) jwt_audiences: Vec<String>,
    /// Start the instances with --etcd-read-leases (reads from the local index under read
    /// leases instead of a quorum read per request).
    #[arg(long)]
    pub(crate) etcd_read_leases: bool,
    /// Testing only: put a proxy on every link between members, so that a member can be cut
    /// off by writing its id (hex) to DIR/isolate-member, and healed by removing the file.
    #[arg(long, hide = true)]
    pub(crate) peer_proxies: bool,
}

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Leave the servers running after the scenario and print their addresses and tokens.
    #[arg(long)]
    pub(crate) keep_running: bool,
    /// With --keep-running: also write the addresses and tokens as JSON to this file once
    /// everything is up (for scripts and the map's browser tests).
    #[arg(long)]
    pub(crate) ready_file: Option<std::path::PathBuf>,
    /// The participants' maps draw this basemap (as `uss --map-tiles`: an XYZ URL template
    /// or a PMTiles file); the DSS's map keeps the offline one.
    #[arg(long, value_name = "URL_TEMPLATE|FILE.pmtiles")]
    pub(crate) map_tiles: Option<String>,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Workloads to run, comma-separated: busy-area, city, subscriptions, restart, soak, planning,
    /// rid (network Remote ID: ISA writes and searches in a busy area and a city), telemetry
    /// (positions streamed into a participant, deviations announced), rid-display (Remote ID
    /// traffic from three service providers on a display provider's views), or all; and
    /// national (a compressed day of a country's traffic, then its peak multiplied until the
    /// DSS saturates; not part of all).
    #[arg(long, default_value = "all")]
    pub(crate) workload: String,
    /// Seconds of measured load per workload (after its preload).
    #[arg(long)]
    pub(crate) duration_secs: Option<u64>,
    /// Concurrent planners/clients.
    #[arg(long)]
    pub(crate) concurrency: Option<usize>,
    /// Live intents preloaded by `city` (through the API).
    #[arg(long)]
    pub(crate) city_intents: Option<usize>,
    /// Live subscriptions preloaded by `subscriptions`.
    #[arg(long)]
    pub(crate) subscriptions: Option<usize>,
    /// Intents on disk for the `restart` measurement.
    #[arg(long)]
    pub(crate) restart_intents: Option<usize>,
    /// Seconds of the `soak` workload: the city mix with log compactions during the run,
    /// reporting throughput, p99, log size and RSS per 10-second window (default 60).
    #[arg(long)]
    pub(crate) soak_secs: Option<u64>,
    /// Live ISAs preloaded by `rid`'s city (default 100,000; one subscription per hundred).
    #[arg(long)]
    pub(crate) rid_isas: Option<usize>,
    /// `telemetry`: flights streaming positions into one participant (default 1,000).
    #[arg(long)]
    pub(crate) telemetry_flights: Option<usize>,
    /// `telemetry`: positions per second of each flight (default 10).
    #[arg(long)]
    pub(crate) telemetry_hz: Option<f64>,
    /// `rid-display`: display views watched once a second (default 16; its flights are
    /// --telemetry-flights, spread over three service providers).
    #[arg(long)]
    pub(crate) rid_views: Option<usize>,
    /// `national`: the country's traffic as a multiple of the US's (InterUSS's sizing: 18.6
    /// new flights/s on average, peaks 3.5 times that). Default 1.
    #[arg(long)]
    pub(crate) national_scale: Option<f64>,
    /// `national`: wall-clock seconds of one simulated hour of the day (default 2.5).
    #[arg(long)]
    pub(crate) national_hour_secs: Option<f64>,
    /// A few seconds at tiny sizes (used by the test suite so the benchmark never rots).
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-report.json")]
    pub(crate) out: PathBuf,
    /// Directory for the benchmark's data directories (a fresh temporary one by default).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// `etcd`: run busy-area and city against a pool (a local etcd cluster and one DSS instance
    /// per member, the load spread over them); the serial baseline stays embedded.
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
    pub(crate) store: String,
    /// etcd members (and DSS instances) of the benchmarked pool.
    #[arg(long, default_value_t = 3)]
    pub(crate) members: usize,
    /// How the benchmarked pool's instances make reads consistent: `lease` (local reads under
    /// read leases, as `dss --etcd-read-leases`) or `quorum` (a quorum read per operation).
    #[arg(long, default_value = "lease", value_parser = ["lease", "quorum"])]
    pub(crate) pool_reads: String,
    /// With --store etcd, busy-area runs once more with this one-way delay (ms) between the
    /// members, injected by a TCP proxy in the bench (the reference's inter-organization figure).
    #[arg(long, default_value_t = 16.5)]
    pub(crate) peer_delay_ms: f64,
    /// +/- jitter (ms, uniform) on that delay.
    #[arg(long, default_value_t = 7.5)]
    pub(crate) peer_jitter_ms: f64,
}

#[derive(Args)]
pub(crate) struct DssArgs {
    /// Address to listen on (host:port).
    #[arg(help_heading = "Listening", long, default_value = "127.0.0.1:8082")]
    pub(crate) listen: SocketAddr,
    /// Serve `/metrics` on this address instead of the API's listener (e.g. an address only
    /// the monitoring network reaches); the API listener then answers it 404.
    #[arg(help_heading = "Listening", long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Directory holding the durable store (created if missing).
    #[arg(help_heading = "Storage", long, default_value = "./deconflict-data")]
    pub(crate) data_dir: PathBuf,
    /// PEM public key (`BEGIN PUBLIC KEY`, RSA or EC P-256) that signs accepted access tokens.
    /// Repeat for several issuers.
    #[arg(help_heading = "Authentication", long = "jwt-public-key", value_name = "PEM_FILE")]
    pub(crate) jwt_public_keys: Vec<PathBuf>,
    /// Audience (`aud`) accepted in access tokens; ecosystem clients use the DSS's host name.
    /// Repeat for several. Defaults to `localhost` (and `127.0.0.1` with --insecure-dev-auth,
    /// what a local participant asks for).
    #[arg(help_heading = "Authentication", long = "jwt-audience", value_name = "AUDIENCE")]
    pub(crate) jwt_audiences: Vec<String>,
    /// Accept tokens signed by the public development key that `deconflict token` uses, and
    /// `http://` base URLs (as --allow-http-base-urls). For local development only: anyone can
    /// mint such tokens.
    #[arg(long, help_heading = "Authentication")]
    pub(crate) insecure_dev_auth: bool,
    /// Accept `http://` USS base URLs in intents, constraints, subscriptions and ISAs. Without
    /// it they must be `https://` (400 otherwise), the reference DSS's rule. For local
    /// ecosystems and tests.
    #[arg(long, help_heading = "Listening")]
    pub(crate) allow_http_base_urls: bool,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    #[command(flatten)]
    pub(crate) jwks: JwksArgs,
    #[command(flatten)]
    pub(crate) map_tiles: MapTilesArgs,
    /// Seconds an entity is kept after its end time before the DSS removes it (default 24 h, so
    /// an owner can still read, update or delete an intent after its flight).
    #[arg(help_heading = "Storage", long, default_value_t = 86_400)]
    pub(crate) retention_secs: i64,
    /// `group` (default) shares disk syncs among concurrent commits; `serial` makes each commit
    /// hold a global lock through its own sync (a baseline for benchmarks, not for production).
    #[arg(help_heading = "Storage", long, default_value = "group", value_parser = ["group", "serial"])]
    pub(crate) commit_mode: String,
    /// The embedded store compacts its log while serving once the log holds this many times
    /// the live data (the last snapshot)...
    #[arg(help_heading = "Storage", long, default_value_t = store_embedded::CompactionPolicy::default().live_factor)]
    pub(crate) compact_live_factor: u64,
    /// ...or this many MiB in any case...
    #[arg(help_heading = "Storage", long, default_value_t = store_embedded::CompactionPolicy::default().max_log_bytes >> 20)]
    pub(crate) compact_max_log_mib: u64,
    /// ...but never for less than this many KiB of log.
    #[arg(help_heading = "Storage", long, default_value_t = store_embedded::CompactionPolicy::default().min_log_bytes >> 10)]
    pub(crate) compact_min_log_kib: u64,
    /// KiB of log space the embedded store allocates ahead of its records (a full disk is
    /// noticed, and writes refused, when an allocation fails).
    #[arg(help_heading = "Storage", long, default_value_t = store_embedded::PREALLOCATE_BYTES >> 10, hide = true)]
    pub(crate) log_preallocate_kib: u64,
    /// Seconds between two sweeps that remove expired entities.
    #[arg(help_heading = "Storage", long, default_value_t = 60)]
    pub(crate) expiry_interval_secs: u64,
    /// Where the airspace record lives: `embedded` (this process's data directory) or `etcd`
    /// (a cluster shared by a pool of DSS instances, see --etcd-endpoints).
    #[arg(help_heading = "Storage", long, default_value = "embedded", value_parser = ["embedded", "etcd"])]
    pub(crate) store: String,
    /// etcd client URLs for --store etcd (comma-separated or repeated), e.g.
    /// http://127.0.0.1:2379,http://127.0.0.1:22379.
    #[arg(help_heading = "Pool (--store etcd)", long = "etcd-endpoints", value_name = "URLS")]
    pub(crate) etcd_endpoints: Vec<String>,
    /// Prefix of every key the DSS writes in etcd (one pool per prefix).
    #[arg(help_heading = "Pool (--store etcd)", long, default_value = "/deconflict/")]
    pub(crate) etcd_prefix: String,
    /// PEM CA certificate that signed the etcd members' client certificates (https endpoints).
    #[arg(help_heading = "Pool (--store etcd)", long, value_name = "PEM_FILE")]
    pub(crate) etcd_ca: Option<PathBuf>,
    /// PEM client certificate presented to etcd (members started with --client-cert-auth).
    #[arg(help_heading = "Pool (--store etcd)", long, value_name = "PEM_FILE")]
    pub(crate) etcd_cert: Option<PathBuf>,
    /// PEM private key of --etcd-cert.
    #[arg(help_heading = "Pool (--store etcd)", long, value_name = "PEM_FILE")]
    pub(crate) etcd_key: Option<PathBuf>,
    /// With --store etcd: answer reads from the local index under an etcd read lease instead of
    /// a quorum read per request; every writer of the pool then waits for this instance to
    /// confirm each write before acknowledging it (docs/POOL.md). The other instances reach this
    /// one at --etcd-ack-url.
    #[arg(long, help_heading = "Pool (--store etcd)")]
    pub(crate) etcd_read_leases: bool,
    /// Base URL the pool's other instances reach this one at for write confirmations
    /// (GET /deconflict/v1/pool/applied); default the --public-endpoint.
    #[arg(help_heading = "Pool (--store etcd)", long, value_name = "URL")]
    pub(crate) etcd_ack_url: Option<String>,
    /// This instance's id in the pool (`/aux/v1/pool/dss_instances`); default dss-<address>.
    #[arg(long, help_heading = "Pool (--store etcd)")]
    pub(crate) instance_id: Option<String>,
    /// The URL clients reach this instance at, as the pool reports it; default http://<address>.
    #[arg(long, help_heading = "Pool (--store etcd)")]
    pub(crate) public_endpoint: Option<String>,
    /// The DSS Airspace Representation id every instance of the pool reports (`/aux/v1/pool`).
    #[arg(help_heading = "Pool (--store etcd)", long, default_value = "deconflict")]
    pub(crate) dar_id: String,
    /// Longest access-token lifetime accepted (`exp - iat`, or `exp - now` without `iat`); the
    /// standard's tokens are short lived. Tokens not yet valid (`nbf`), issued in the future
    /// (`iat`) or naming critical header extensions (`crit`) are always refused.
    #[arg(help_heading = "Authentication", long, default_value_t = auth::DEFAULT_MAX_LIFETIME_S)]
    pub(crate) max_token_lifetime_secs: u64,
    /// Enforce the spec's text that asking for constraint notifications (`notify_for_constraints`
    /// in a subscription or an intent's `new_subscription`) needs `utm.constraint_processing`.
    /// By default the DSS accepts it with `utm.strategic_coordination` alone, as the reference
    /// DSS does and ecosystem clients expect.
    #[arg(long, help_heading = "Authentication")]
    pub(crate) strict_scopes: bool,
    /// Discovery's generosity, in metres: area queries and subscriber lists match footprints
    /// whose convex hulls, each padded by this margin, meet (the standard's qualification tools
    /// expect interlocking flights to discover each other). Key checks stay exact.
    #[arg(help_heading = "Discovery", long, default_value_t = dss::DEFAULT_RELEVANCE_MARGIN_M)]
    pub(crate) relevance_margin_m: f64,
    /// The scope a token needs to read the airspace map at `/map` (references only, never an
    /// OVN): one of the scopes this system knows, e.g. `deconflict.map.read` for an authority,
    /// or `utm.strategic_coordination` to let every participant look.
    #[arg(help_heading = "Listening", long, default_value = "deconflict.map.read")]
    pub(crate) map_scope: String,
    #[command(flatten)]
    pub(crate) http: HttpLimitArgs,
    /// Requests per second allowed per token subject (`sub`), 0 for no limit; beyond it and the
    /// burst, requests get 429 with `Retry-After`.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = 1000.0)]
    pub(crate) rate_limit_per_sub: f64,
    /// Requests a subject may make at once before `--rate-limit-per-sub` applies (default: two
    /// seconds' worth).
    #[arg(long, help_heading = "Rate limits and quotas")]
    pub(crate) rate_limit_burst: Option<f64>,
    /// Requests per second with an invalid or missing token allowed per client address, 0 for
    /// no limit; past it (burst 5x) that address's requests get 429 before any token is checked.
    /// Generous by default (a signature check costs tens of microseconds): it exists so that a
    /// flood of forged tokens cannot buy signature checks, not to trip clients' negative tests.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = 200.0)]
    pub(crate) rate_limit_failed_auth_per_ip: f64,
    /// Live operational intents one manager (token `sub`) may hold; past it, 429.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = dss::Quotas::default().max_intents)]
    pub(crate) max_intents_per_manager: usize,
    /// Live constraints one manager may hold; past it, 429.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = dss::Quotas::default().max_constraints)]
    pub(crate) max_constraints_per_manager: usize,
    /// Live subscriptions (implicit ones included) one manager may hold; past it, 429.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = dss::Quotas::default().max_subscriptions)]
    pub(crate) max_subscriptions_per_manager: usize,
    /// Vertices over all of one manager's intents, constraints and subscriptions (a circle
    /// counts as one); past it, 429.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = dss::Quotas::default().max_vertices)]
    pub(crate) max_vertices_per_manager: usize,
    /// Live Remote ID identification service areas one manager may hold; past it, 429.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = dss::Quotas::default().max_isas)]
    pub(crate) max_isas_per_manager: usize,
    /// Live Remote ID subscriptions one manager may hold (besides the ten over any one area
    /// that F3411 allows); past it, 429.
    #[arg(help_heading = "Rate limits and quotas", long, default_value_t = dss::Quotas::default().max_rid_subscriptions)]
    pub(crate) max_rid_subscriptions_per_manager: usize,
    /// Largest report (`POST /dss/v1/reports`) accepted, in bytes; reports are kept in
    /// DATA_DIR/reports.
    #[arg(help_heading = "Reports", long, default_value_t = server::reports::Retention::default().max_report_bytes)]
    pub(crate) max_report_bytes: usize,
    /// Reports kept per reporter (token subject); a reporter past it loses its own oldest, never
    /// another's.
    #[arg(help_heading = "Reports", long, default_value_t = server::reports::Retention::default().max_reports)]
    pub(crate) max_reports: usize,
    /// Mebibytes of reports kept over all reporters; past it the reporter holding the most
    /// loses its oldest first.
    #[arg(help_heading = "Reports", long, default_value_t = server::reports::Retention::default().max_total_bytes / (1024 * 1024))]
    pub(crate) max_report_total_mib: u64,
    /// Days a report is kept.
    #[arg(help_heading = "Reports", long, default_value_t = 30)]
    pub(crate) report_retention_days: u64,
}

/// HTTPS: serving it (`--tls-cert`, `--tls-key`) and whom to trust when calling out
/// (`--ca-cert`).
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "HTTPS")]
pub(crate) struct TlsArgs {
    /// Serve HTTPS with this PEM certificate chain (leaf first), for deployments without a
    /// TLS-terminating proxy. Reloaded on SIGHUP and when the file changes; a file that cannot
    /// be read keeps the previous certificate in use. Needs --tls-key.
    #[arg(long, value_name = "PEM_FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM_FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// A PEM CA certificate to trust when calling out over https (the DSS, peers, the token
    /// endpoint, the pool's other instances), besides Mozilla's and the system's roots: an
    /// ecosystem's or a test's private CA. Repeatable.
    #[arg(long = "ca-cert", value_name = "PEM_FILE")]
    pub(crate) ca_certs: Vec<PathBuf>,
}

impl TlsArgs {
    /// The certificate to serve, loaded now (and then followed), or None for plain HTTP.
    pub(crate) fn serving(&self) -> Result<Option<server::tls::Tls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = server::tls::Tls::load(server::tls::TlsFiles { cert: cert.clone(), key: key.clone() })
                    .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?;
                Ok(Some(tls))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn trust(&self) -> Result<client::tls::Trust> {
        client::tls::Trust::from_pem_files(&self.ca_certs).map_err(|e| anyhow::anyhow!("--ca-cert: {e}"))
    }
}

/// Identity providers' published keys (JWKS), besides PEM files.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Identity providers")]
pub(crate) struct JwksArgs {
    /// URL of an identity provider's JSON Web Key Set whose RSA and EC keys sign accepted
    /// tokens (besides any --jwt-public-key). Fetched at start (the start fails if it cannot be
    /// read), every --jwks-refresh-secs, and when a token names a key id not in the set (a
    /// rotation). Repeatable.
    #[arg(long = "jwks-url", value_name = "URL")]
    pub(crate) jwks_urls: Vec<String>,
    /// Seconds between two routine fetches of the key sets.
    #[arg(long, default_value_t = 300)]
    pub(crate) jwks_refresh_secs: u64,
    /// Least seconds between two fetches asked for by tokens with unknown key ids (a flood of
    /// made-up key ids costs one fetch per interval).
    #[arg(long, default_value_t = 10)]
    pub(crate) jwks_min_interval_secs: u64,
}

impl JwksArgs {
    pub(crate) fn options(&self) -> client::jwks::JwksOptions {
        client::jwks::JwksOptions {
            urls: self.jwks_urls.clone(),
            refresh: Duration::from_secs(self.jwks_refresh_secs.max(1)),
            min_interval: Duration::from_secs(self.jwks_min_interval_secs.max(1)),
        }
    }
}

/// What the map draws under the airspace (see `map::basemap`).
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Map")]
pub(crate) struct MapTilesArgs {
    /// The map's basemap: an XYZ tile URL template fetched by the browser (e.g.
    /// `https://tile.example.org/{z}/{x}/{y}.png`), or a local PMTiles archive that this server
    /// serves at /map/tiles/{z}/{x}/{y}. Default: the embedded Natural Earth land and borders,
    /// offline but without streets. The map names its basemap in a corner.
    #[arg(long, value_name = "URL_TEMPLATE|FILE.pmtiles")]
    pub(crate) map_tiles: Option<String>,
    /// `raster` or `vector` tiles; guessed when absent (a template ending in .pbf or .mvt is
    /// vector; an archive says what it holds).
    #[arg(long, value_parser = ["raster", "vector"])]
    pub(crate) map_tiles_kind: Option<String>,
    /// The basemap's name in the map's corner (default: the template's host or the file's name).
    #[arg(long)]
    pub(crate) map_tiles_label: Option<String>,
    /// The tiles' attribution, shown on the map (their licence usually requires one).
    #[arg(long)]
    pub(crate) map_tiles_attribution: Option<String>,
}

impl MapTilesArgs {
    /// The basemap these flags name (the offline one without --map-tiles).
    pub(crate) async fn open(&self) -> Result<map::Basemap> {
        let Some(spec) = &self.map_tiles else { return Ok(map::Basemap::offline()) };
        let kind = self.map_tiles_kind.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
        let source = map::TileSource {
            spec: spec.clone(),
            kind,
            label: self.map_tiles_label.clone(),
            attribution: self.map_tiles_attribution.clone(),
        };
        map::Basemap::open(&source).await.map_err(anyhow::Error::msg)
    }
}

/// Connection hygiene of the DSS listener (see `server::http`).
#[derive(Args, Clone)]
#[command(next_help_heading = "Connections")]
pub(crate) struct HttpLimitArgs {
    /// Seconds a client has, from the first byte of a request head, to send the whole head;
    /// slower clients are disconnected.
    #[arg(long, default_value_t = 10)]
    pub(crate) header_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight and nothing received.
    #[arg(long, default_value_t = 60)]
    pub(crate) idle_timeout_secs: u64,
    /// Seconds a request may take before it is answered 503 (the reference DSS uses 10 s).
    #[arg(long, default_value_t = 10)]
    pub(crate) request_timeout_secs: u64,
    /// Seconds a client has, from the end of its request head, to send the whole body; a body
    /// still arriving then is answered 408 and the connection closed. While its body is
    /// arriving a connection counts as idle for eviction at the connection cap.
    #[arg(long, default_value_t = 10)]
    pub(crate) body_timeout_secs: u64,
    /// Concurrent client connections; at the cap, the connection idle for longest is closed to
    /// admit a new one. Defaults to the open-file limit (raised to its hard limit at start-up)
    /// less 64.
    #[arg(long)]
    pub(crate) max_connections: Option<usize>,
}

impl HttpLimitArgs {
    pub(crate) fn limits(&self) -> Result<server::http::Limits> {
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
pub(crate) struct TokenArgs {
    /// The USS identity (`sub` claim).
    #[arg(long)]
    pub(crate) sub: String,
    /// A scope to grant, e.g. utm.strategic_coordination. Repeat for several.
    #[arg(long = "scope", required = true)]
    pub(crate) scopes: Vec<String>,
    /// The audience (`aud` claim): the host name of the server the token is for.
    #[arg(long, default_value = "localhost")]
    pub(crate) audience: String,
    /// Lifetime of the token in seconds (the standard allows at most one hour).
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl_secs: u64,
    /// Sign with this PEM private key (RSA signs RS256, EC signs ES256) instead of the
    /// development key.
    #[arg(long, value_name = "PEM_FILE")]
    pub(crate) key: Option<PathBuf>,
}
