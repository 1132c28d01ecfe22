//! What the participant's workflows need from the world, as small traits: the DSS, the peers,
//! a clock and an id source. The real ones (`http_ports`) speak HTTP and read the system clock;
//! the unit tests' fakes answer from memory and advance time without sleeping, so every
//! workflow (plan, end, reconcile, deliveries) is proven without a network or a timer.
//!
//! Answers cross these traits in domain terms ([`Reference`], [`Subscriber`], [`DssFailure`]):
//! the DSS's wire forms are converted once, inside the adapter.

use std::time::Duration;

use futures_util::future::BoxFuture;
use geo4d::{Timestamp, Volume4D};
use model::OperationalIntentState;

use crate::domain::{Kind, Reference, Subscriber};

/// Why the DSS did not do what was asked, in the terms the workflows decide on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DssFailure {
    /// No such entity (404).
    #[error("HTTP 404: {0}")]
    NotFound(String),
    /// 409 naming no missing entity: the OVN we gave is not the current one of our own entity.
    #[error("409 conflict: {0}")]
    StaleOvn(String),
    /// 409 naming entities our key lacked: the airspace changed after our survey.
    #[error("409 conflict: {0}")]
    KeyMissing(String),
    /// The DSS refused what was asked as invalid (400, 413), with its reason.
    #[error("HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    /// Its rate limit for us (429) or it is unavailable (503), with the wait it asked for.
    #[error("HTTP {status}: {message}")]
    Busy { status: u16, message: String, retry_after_s: Option<u64> },
    /// Anything else: another status, a transport failure, no token for it.
    #[error("{0}")]
    Failed(String),
}

/// What the DSS answered to a change: the reference as it now holds it and whom to tell.
#[derive(Debug, Clone)]
pub struct Written {
    pub reference: Reference,
    pub subscribers: Vec<Subscriber>,
}

/// An operational intent reference as it is to be written.
#[derive(Debug, Clone)]
pub struct IntentWrite<'a> {
    pub volumes: &'a [Volume4D],
    pub state: OperationalIntentState,
    /// OVNs of every entity our survey saw.
    pub key: &'a [String],
    pub base_url: &'a str,
    /// Whether the implicit subscription also hears of constraints.
    pub notify_for_constraints: bool,
}

/// An explicit subscription as it is to be written.
#[derive(Debug, Clone)]
pub struct SubscriptionWrite<'a> {
    pub volume: &'a Volume4D,
    pub base_url: &'a str,
    pub notify_for_intents: bool,
    pub notify_for_constraints: bool,
}

/// A network Remote ID subscriber the DSS names for an ISA change: where to post (its
/// subscription's base URL) and for which subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct RidSubscriber {
    pub url: String,
    pub subscriptions: Vec<(String, i32)>,
}

/// What the DSS answered to an ISA write: the ISA as it now holds it and whom to tell.
#[derive(Debug, Clone)]
pub struct IsaWritten {
    pub service_area: api::IdentificationServiceArea,
    pub subscribers: Vec<RidSubscriber>,
}

/// The DSS, as the participant uses it.
pub trait Dss: Send + Sync {
    /// References of `kind` in `area`.
    fn query<'a>(&'a self, kind: Kind, area: &'a Volume4D) -> BoxFuture<'a, Result<Vec<Reference>, DssFailure>>;
    /// One reference; `None` when the DSS holds no such entity.
    fn get<'a>(&'a self, kind: Kind, id: &'a str) -> BoxFuture<'a, Result<Option<Reference>, DssFailure>>;
    fn put_intent<'a>(
        &'a self,
        id: &'a str,
        ovn: Option<&'a str>,
        write: IntentWrite<'a>,
    ) -> BoxFuture<'a, Result<Written, DssFailure>>;
    fn put_constraint<'a>(
        &'a self,
        id: &'a str,
        volumes: &'a [Volume4D],
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<Written, DssFailure>>;
    /// Removes a reference; `None` when it was already gone (404), else the subscribers to tell.
    fn delete<'a>(
        &'a self,
        kind: Kind,
        id: &'a str,
        ovn: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Subscriber>>, DssFailure>>;
    fn put_subscription<'a>(
        &'a self,
        id: &'a str,
        write: SubscriptionWrite<'a>,
    ) -> BoxFuture<'a, Result<(), DssFailure>>;
    /// Whether the DSS holds subscription `id`.
    fn has_subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, DssFailure>>;
    /// F3411-22a: creates (`version` none) or updates our identification service area `id`
    /// over `volume`, its flights served under `base_url`.
    fn put_isa<'a>(
        &'a self,
        id: &'a str,
        version: Option<&'a str>,
        volume: &'a Volume4D,
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<IsaWritten, DssFailure>>;
    /// F3411-22a: creates Remote ID subscription `id` over `volume`, notifications to
    /// `base_url`; answers the ISAs in its area.
    fn put_rid_subscription<'a>(
        &'a self,
        id: &'a str,
        volume: &'a Volume4D,
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<(String, Vec<api::IdentificationServiceArea>), DssFailure>>;
    /// Deletes our Remote ID subscription `id` at `version` (gone already is fine).
    fn delete_rid_subscription<'a>(&'a self, id: &'a str, version: &'a str) -> BoxFuture<'a, Result<(), DssFailure>>;
    /// F3411-22a: the ISAs over `area` (`lat,lng,...` polygon text).
    fn search_isas<'a>(
        &'a self,
        area: &'a str,
    ) -> BoxFuture<'a, Result<Vec<api::IdentificationServiceArea>, DssFailure>>;
    /// ISA `id` as the DSS holds it; `None` when it holds none (F3411-22a lets display
    /// providers read it).
    fn get_isa<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<api::IdentificationServiceArea>, DssFailure>>;
    /// Deletes our ISA `id` at `version`; `None` when it was already gone.
    fn delete_isa<'a>(
        &'a self,
        id: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<RidSubscriber>>, DssFailure>>;
}

/// One attempt at posting a notification to a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A 2xx answer.
    Acknowledged(u16),
    /// Any other HTTP answer.
    Answered(u16),
    /// No answer: refused connection, broken transport, no token to send with.
    Unreachable(String),
    /// No answer within the peer timeout.
    TimedOut(Duration),
    /// Never sent: the subscriber's base URL is not one we call.
    NotSent(String),
}

impl Attempt {
    /// Network failures, overload and server errors may pass; a 4xx answer, or a base URL we
    /// will not call, will not.
    pub fn retryable(&self) -> bool {
        match self {
            Attempt::Answered(status) => *status == 429 || *status >= 500,
            Attempt::Unreachable(_) | Attempt::TimedOut(_) => true,
            Attempt::Acknowledged(_) | Attempt::NotSent(_) => false,
        }
    }
}

/// Other participants, as the participant calls them. Peers are untrusted: what they serve is
/// verified by the caller against the DSS's reference.
pub trait Peers: Send + Sync {
    /// The details `r`'s manager serves for it, or why they could not be had (bounded in time
    /// and size).
    fn intent_details<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<api::OperationalIntent, String>>;
    fn constraint_details<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<api::Constraint, String>>;
    /// The latest telemetry `r`'s manager serves for its off-nominal intent (bounded in time
    /// and size).
    fn intent_telemetry<'a>(
        &'a self,
        r: &'a Reference,
    ) -> BoxFuture<'a, Result<api::GetOperationalIntentTelemetryResponse, String>>;
    /// A Remote ID service provider's flights in `view` (`lat1,lng1,lat2,lng2`), from
    /// `{base_url}/uss/flights` (bounded in time and size).
    fn rid_flights<'a>(
        &'a self,
        base_url: &'a str,
        view: &'a str,
    ) -> BoxFuture<'a, Result<api::GetFlightsResponse, String>>;
    /// A Remote ID flight's details from `{base_url}/uss/flights/{id}/details`, as JSON (bounded).
    fn rid_flight_details<'a>(
        &'a self,
        base_url: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>>;
    /// Posts a notification body to `path` under `base_url`.
    fn notify<'a>(&'a self, base_url: &'a str, path: &'a str, body: &'a serde_json::Value) -> BoxFuture<'a, Attempt>;
}

/// The time, and waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Fresh entity ids (UUIDv4, as the standard requires).
pub trait Ids: Send + Sync {
    fn new_id(&self) -> String;
}
