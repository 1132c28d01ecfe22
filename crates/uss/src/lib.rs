//! A participant (USS): keeps the full details of its organization's operations, serves them
//! to authorized peers, plans new operations around everyone else's through the DSS, and is
//! notified when something in its area changes. It knows the DSS only through its public API.
//!
//! Two listeners, never one: the **peer API** of `utm.yaml` (`/uss/v1/...`), which other
//! participants must reach, and the **operator API** (`/operator/...`) on its own address
//! (loopback by default), where every request carries a bearer token with the
//! `deconflict.operator` scope. Identity always comes from a verified token and the DSS's
//! records, never from a field a peer wrote; what cannot be verified blocks the airspace it may
//! occupy; and every change is recorded durably (write-ahead) before the DSS is asked to make
//! it, so a crash at any point is finished or undone on restart.

pub mod altitude;
pub mod db;
pub mod domain;
pub mod entities;
pub mod error;
pub mod flight_planning;
mod http_ports;
mod lookups;
mod map_view;
mod monitor;
mod notify;
pub mod operator;
mod operator_api;
mod peer;
mod plan;
pub mod ports;
mod reconcile;
pub mod records;
pub mod rid_dp;
pub mod rid_sp;
mod rid_testing;
mod survey;
pub mod telemetry;
#[cfg(test)]
mod tests;
pub mod tokens;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use auth::{Caller, Scope, Verifier};
use axum::http::HeaderMap;
use geo4d::Timestamp;
use parking_lot::Mutex;

use crate::domain::Reference;
use crate::error::UssError;
use crate::ports::{Clock, Dss, Ids, Peers};
use crate::records::Records;
use crate::tokens::TokenSource;

pub use monitor::PositionsOutcome;
pub use operator_api::app as operator_app;

/// `# HELP` text for the participant's metrics (served at `/metrics` on the operator listener,
/// or `--metrics-listen`).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!("uss_plans_total", "Plans and changes of our operations, by outcome (planned, refused, failed)");
    describe_histogram!("uss_plan_seconds", Unit::Seconds, "A plan from the request to its outcome, by outcome");
    describe_counter!(
        "uss_notification_deliveries_total",
        "Attempts to deliver our notifications to subscribers, by outcome (acknowledged, retrying, failed)"
    );
    describe_counter!("uss_notification_retries_total", "Notification deliveries attempted again after a failure");
    describe_counter!("uss_notifications_received_total", "Peers' notifications received, by kind");
    describe_histogram!(
        "uss_peer_request_seconds",
        Unit::Seconds,
        "Calls to other participants, by call (intent_details, notify, ...) and outcome"
    );
    describe_histogram!(
        "dss_client_request_seconds",
        Unit::Seconds,
        "Calls to the DSS, by method, route (ids left out) and outcome (ok, refused, busy, unreachable)"
    );
}
pub use peer::app as peer_app;

/// Largest peer answer read (details of a maximum-size intent, 100 volumes of 1000 vertices
/// nominal and off-nominal, are about 11 MB of JSON); anything longer is cut off.
pub const MAX_PEER_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Largest request body accepted from a peer or the operator.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// A point in a change where a test can make the process die as `kill -9` would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The write-ahead record is durable; the DSS has not been asked yet.
    AfterWriteAhead,
    /// The DSS made the change; the participant has not recorded the outcome.
    AfterDssWrite,
}

impl CrashPoint {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "after-write-ahead" => Some(CrashPoint::AfterWriteAhead),
            "after-dss-write" => Some(CrashPoint::AfterDssWrite),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UssConfig {
    /// Our public base URL (no trailing slash): what peers call.
    pub base_url: String,
    pub dss_url: String,
    /// Scopes requested for our tokens.
    pub scopes: Vec<String>,
    /// Time allowed to a peer or the DSS (connect and whole answer).
    pub peer_timeout: Duration,
    /// Highest priority an operator may ask for.
    pub max_priority: i32,
    /// Token subjects allowed on the operator interface (empty: any holder of the scope).
    pub operator_subjects: Vec<String>,
    /// Token subjects allowed to report positions with `deconflict.telemetry`
    /// (`--telemetry-subject`); when this or `operator_subjects` is given, only these and the
    /// operators may (empty both: any holder of the scope).
    pub telemetry_subjects: Vec<String>,
    /// How long failed notifications are retried, with exponential backoff.
    pub notify_retry_for: Duration,
    /// Testing only: die at this point of the next change.
    pub crash_at: Option<CrashPoint>,
    /// Serve InterUSS's flight_planning v1 interface on the peer listener (`--flight-planning`).
    pub flight_planning: bool,
    /// Token subjects allowed on the flight_planning interface (`--flight-planning-subject`).
    pub flight_planning_subjects: Vec<String>,
    /// Serve InterUSS's Remote ID injection and observation interfaces (`--rid-testing`)...
    pub rid_testing: bool,
    /// ...to these token subjects only (`--rid-testing-subject`).
    pub rid_testing_subjects: Vec<String>,
    /// Testing only: answer every `n`-th request for details after this delay (`--slow-answers`),
    /// to measure how a slow peer affects others' plans.
    pub slow_answers: Option<(u64, Duration)>,
    /// The conformance monitor's timers (`--contingent-after-secs`, `--conforming-after-secs`,
    /// `--telemetry-timeout-secs`).
    pub monitor: telemetry::MonitorConfig,
    /// Call peers at `http://` base URLs (`--allow-http-base-urls`); otherwise https only.
    pub allow_http_base_urls: bool,
    /// The CAs trusted when calling the DSS, peers and the token endpoint (`--ca-cert`).
    pub trust: client::tls::Trust,
}

/// Who may call what: peers (the ecosystem's issuers), the operator, and, when given, the
/// issuer whose tokens may drive the flight_planning interface whatever their subject.
pub struct Verifiers {
    pub peer: Verifier,
    pub operator: Verifier,
    pub flight_planning: Option<Verifier>,
}

/// The world as the participant's workflows see it (see [`ports`]).
pub struct Ports {
    pub dss: Arc<dyn Dss>,
    pub peers: Arc<dyn Peers>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
}

pub struct Uss {
    pub config: UssConfig,
    /// Our identity: the subject of our tokens, the manager the DSS records for our entities.
    client_id: String,
    pub(crate) records: Records,
    pub(crate) dss: Arc<dyn Dss>,
    pub(crate) peers: Arc<dyn Peers>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn Ids>,
    peer_verifier: Verifier,
    operator_verifier: Verifier,
    flight_planning_verifier: Option<Verifier>,
    /// One change at a time per entity; changes of different entities run in parallel.
    entity_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Requests for details served, for `slow_answers`.
    pub(crate) details_served: std::sync::atomic::AtomicU64,
    /// The live feed of the operator's map (`/operator/events`).
    pub(crate) events: tokio::sync::broadcast::Sender<map_view::FeedEvent>,
    /// DSS look-ups peers' notifications make us do: coalesced and bounded.
    pub(crate) intent_lookups: lookups::PeerLookups<Option<Reference>>,
    pub(crate) constraint_lookups: lookups::PeerLookups<Option<Reference>>,
    /// Live flights: ours as monitored, others' off-nominal ones as polled.
    pub(crate) monitor: Mutex<monitor::MonitorState>,
    /// Remote ID display provider: the ISAs known, our subscriptions, providers' answers.
    pub(crate) rid_dp_state: Mutex<rid_dp::DpState>,
    /// Remote ID test flights injected by a test driver, by test id.
    pub(crate) rid_tests: Mutex<HashMap<String, rid_testing::InjectedTest>>,
}

/// An instant as the participant writes it in records and feeds (RFC 3339, milliseconds).
pub(crate) fn time_text(t: Timestamp) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(t.micros())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl Uss {
    /// Opens the participant's data directory and loads its records, with the real ports: the
    /// DSS and peers over HTTP with our tokens, the system clock, random ids.
    pub fn open(
        config: UssConfig,
        tokens: TokenSource,
        verifiers: Verifiers,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Uss>, String> {
        let http = config
            .trust
            .client_builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(config.peer_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let client_id = tokens.client_id().to_owned();
        let tokens = Arc::new(tokens);
        let ports = Ports {
            dss: Arc::new(http_ports::HttpDss::new(http.clone(), &config.dss_url, tokens.clone())),
            peers: Arc::new(http_ports::HttpPeers::new(http, tokens, config.peer_timeout, config.allow_http_base_urls)),
            clock: Arc::new(http_ports::SystemClock),
            ids: Arc::new(http_ports::RandomIds),
        };
        Self::with_ports(config, client_id, ports, verifiers, data_dir)
    }

    /// Opens the participant on the given ports (the unit tests' fakes, or the real ones).
    pub fn with_ports(
        config: UssConfig,
        client_id: String,
        ports: Ports,
        verifiers: Verifiers,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Uss>, String> {
        let Verifiers { peer: peer_verifier, operator: operator_verifier, flight_planning: flight_planning_verifier } =
            verifiers;
        let records = Records::open(data_dir)?;
        Ok(Arc::new(Uss {
            config,
            client_id,
            records,
            dss: ports.dss,
            peers: ports.peers,
            clock: ports.clock,
            ids: ports.ids,
            peer_verifier,
            operator_verifier,
            flight_planning_verifier,
            entity_locks: Mutex::new(HashMap::new()),
            details_served: std::sync::atomic::AtomicU64::new(0),
            events: map_view::channel(),
            intent_lookups: lookups::PeerLookups::new(),
            constraint_lookups: lookups::PeerLookups::new(),
            monitor: Mutex::new(monitor::MonitorState::default()),
            rid_dp_state: Mutex::new(rid_dp::DpState::default()),
            rid_tests: Mutex::new(HashMap::new()),
        }))
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn now_text(&self) -> String {
        time_text(self.now())
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn has_scope(&self, scope: &str) -> bool {
        self.config.scopes.iter().any(|s| s == scope)
    }

    /// The peer calling: a verified token holding one of `any_of`.
    pub(crate) fn peer(&self, headers: &HeaderMap, any_of: &[Scope]) -> Result<Caller, UssError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = self.peer_verifier.verify(header)?;
        caller.require_any(any_of)?;
        Ok(caller)
    }

    /// The test director calling the flight_planning interface: a token from the
    /// flight_planning issuer (`--flight-planning-jwt-public-key`), or a peer token whose
    /// subject is listed (`--flight-planning-subject`); with one of `any_of`. Any other subject,
    /// another USS holding the interface's scopes from the shared issuer included, gets 403: it
    /// could otherwise clear our area and end our operator's flights.
    pub(crate) fn flight_planner(&self, headers: &HeaderMap, any_of: &[Scope]) -> Result<Caller, UssError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Some(caller) = self.flight_planning_verifier.as_ref().and_then(|v| v.verify(header).ok()) {
            caller.require_any(any_of)?;
            return Ok(caller);
        }
        let caller = self.peer_verifier.verify(header)?;
        if !self.config.flight_planning_subjects.contains(&caller.manager) {
            return Err(UssError::Forbidden(format!(
                "`{}` may not drive this participant's flight_planning interface (not among its \
                 --flight-planning-subject)",
                caller.manager
            )));
        }
        caller.require_any(any_of)?;
        Ok(caller)
    }

    /// The operator calling: a verified token with the operator scope (and an allowed subject
    /// when subjects are configured).
    pub(crate) fn operator(&self, headers: &HeaderMap) -> Result<Caller, UssError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = self.operator_verifier.verify(header)?;
        caller.require_any(&[Scope::Operator])?;
        if !self.config.operator_subjects.is_empty() && !self.config.operator_subjects.contains(&caller.manager) {
            return Err(UssError::Forbidden(format!("`{}` is not among this participant's operators", caller.manager)));
        }
        Ok(caller)
    }

    /// A caller reporting positions: the operator (as [`Self::operator`]), or a token with
    /// `deconflict.telemetry` (a ground station: positions only, no plans).
    pub(crate) fn reporter(&self, headers: &HeaderMap) -> Result<Caller, UssError> {
        let header = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = self.operator_verifier.verify(header)?;
        if caller.has(Scope::Operator) {
            return self.operator(headers);
        }
        caller.require_any(&[Scope::Telemetry])?;
        let listed = |l: &[String]| l.contains(&caller.manager);
        let restricted = !self.config.telemetry_subjects.is_empty() || !self.config.operator_subjects.is_empty();
        if restricted && !listed(&self.config.telemetry_subjects) && !listed(&self.config.operator_subjects) {
            return Err(UssError::Forbidden(format!(
                "`{}` may not report positions here (not among this participant's --telemetry-subject or operators)",
                caller.manager
            )));
        }
        Ok(caller)
    }

    /// Serializes changes of one entity; different entities proceed in parallel.
    pub(crate) async fn lock_entity(&self, id: &str) -> EntityGuard<'_> {
        let lock = self.entity_locks.lock().entry(id.to_owned()).or_default().clone();
        let guard = lock.lock_owned().await;
        EntityGuard { uss: self, id: id.to_owned(), _guard: Some(guard) }
    }

    /// Testing only: dies as `kill -9` would if this is the configured crash point.
    pub(crate) fn crash_point(&self, point: CrashPoint) {
        if self.config.crash_at == Some(point) {
            eprintln!("deconflict uss: crashing at {point:?} as configured (--crash-at)");
            std::process::abort();
        }
    }
}

/// Held while an entity is being changed; drops its lock entry when nobody else waits.
pub(crate) struct EntityGuard<'a> {
    uss: &'a Uss,
    id: String,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for EntityGuard<'_> {
    fn drop(&mut self) {
        self._guard.take();
        let mut locks = self.uss.entity_locks.lock();
        if locks.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&self.id);
        }
    }
}
