//! A typed HTTP client for the ASTM F3548-21 DSS API, on the wire types of `api`.
//!
//! Used by the load generator and by participants. It adds nothing to the protocol: one method
//! per endpoint, errors carrying the server's status and message (and the conflict details on a
//! 409 with missing OVNs).

pub mod jwks;
pub mod tls;

use api::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 409 with the entities whose OVNs the key lacked (empty lists for a stale OVN).
    #[error("409 conflict: {}", .0.message)]
    Conflict(AirspaceConflictResponse),
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    /// 429 (or 503) with the wait the DSS asked for (`Retry-After`, seconds), if it gave one.
    #[error("HTTP {status}: {message}")]
    Busy { status: u16, message: String, retry_after_s: Option<u64> },
    #[error("transport: {0}")]
    Transport(String),
}

impl ClientError {
    pub fn status(&self) -> u16 {
        match self {
            ClientError::Conflict(_) => 409,
            ClientError::Status { status, .. } | ClientError::Busy { status, .. } => *status,
            ClientError::Transport(_) => 0,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Paths of the DSS endpoints, shared by every transport.
pub mod paths {
    pub const INTENTS: &str = "/dss/v1/operational_intent_references";
    pub const CONSTRAINTS: &str = "/dss/v1/constraint_references";
    pub const SUBSCRIPTIONS: &str = "/dss/v1/subscriptions";
    /// F3411-22a's identification service areas.
    pub const RID_ISAS: &str = "/rid/v2/dss/identification_service_areas";
    pub const RID_SUBSCRIPTIONS: &str = "/rid/v2/dss/subscriptions";

    /// `{collection}/{id}` to create or read, `{collection}/{id}/{version}` to update or delete.
    pub fn entity(collection: &str, id: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{collection}/{id}/{v}"),
            None => format!("{collection}/{id}"),
        }
    }
}

/// A DSS answer as the typed body on 2xx, or the error it carries (with the missing entities
/// of a 409 when the body lists them). Shared with other transports (the load generator's).
pub fn decode_response<T: DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Transport(format!("unexpected response body: {e}")));
    }
    if status == 409 {
        if let Ok(c) = serde_json::from_slice::<AirspaceConflictResponse>(bytes) {
            return Err(ClientError::Conflict(c));
        }
    }
    let message = serde_json::from_slice::<ErrorResponse>(bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned());
    Err(ClientError::Status { status, message })
}

/// One DSS, one bearer token.
#[derive(Clone)]
pub struct DssClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn method_label(m: &reqwest::Method) -> &'static str {
    match *m {
        reqwest::Method::GET => "GET",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::POST => "POST",
        reqwest::Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// A DSS path without its ids and versions (the metric's `route`, of bounded cardinality):
/// `/dss/v1/operational_intent_references/{id}/{ovn}` is `/dss/v1/operational_intent_references`,
/// `.../query` keeps its last segment. Ids are UUIDs, so the first segment with a `-` (or
/// anything not a plain lower-case name) ends the route.
fn route_label(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('?').next().unwrap_or_default().split('/').filter(|s| !s.is_empty()) {
        if !seg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            break;
        }
        out.push('/');
        out.push_str(seg);
    }
    out
}

impl DssClient {
    /// `base` is the DSS root, e.g. `http://127.0.0.1:8082`.
    pub fn new(http: reqwest::Client, base: impl Into<String>, token: impl Into<String>) -> Self {
        Self { http, base: base.into().trim_end_matches('/').to_owned(), token: token.into() }
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let label = (method_label(&method), route_label(path));
        let span = otel::client_span(format_args!("{} {}", label.0, label.1));
        let result = self.send_timed(method, path, body).instrument(span).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ClientError::Busy { .. }) => "busy",
            Err(ClientError::Transport(_)) => "unreachable",
            Err(_) => "refused",
        };
        metrics::histogram!("dss_client_request_seconds", "method" => label.0, "route" => label.1, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn send_timed<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req =
            otel::traced(self.http.request(method, format!("{}{}", self.base, path)).bearer_auth(&self.token));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport(tls::error_chain(&e)))?;
        let status = resp.status().as_u16();
        let retry_after_s = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport(tls::error_chain(&e)))?;
        match decode_response(status, &bytes) {
            Err(ClientError::Status { status, message }) if status == 429 || status == 503 => {
                Err(ClientError::Busy { status, message, retry_after_s })
            }
            other => other,
        }
    }

    pub async fn query_intents(&self, area: &Volume4D) -> Result<QueryOperationalIntentReferenceResponse> {
        let body = QueryParameters { area_of_interest: Some(area.clone()) };
        self.send(reqwest::Method::POST, "/dss/v1/operational_intent_references/query", Some(&body)).await
    }

    pub async fn get_intent(&self, id: &str) -> Result<GetOperationalIntentReferenceResponse> {
        self.send::<(), _>(reqwest::Method::GET, &paths::entity(paths::INTENTS, id, None), None).await
    }

    /// Creates (`ovn` is `None`) or updates an intent reference.
    pub async fn put_intent(
        &self,
        id: &str,
        ovn: Option<&str>,
        body: &PutOperationalIntentReferenceParameters,
    ) -> Result<ChangeOperationalIntentReferenceResponse> {
        self.send(reqwest::Method::PUT, &paths::entity(paths::INTENTS, id, ovn), Some(body)).await
    }

    pub async fn delete_intent(&self, id: &str, ovn: &str) -> Result<ChangeOperationalIntentReferenceResponse> {
        self.send::<(), _>(reqwest::Method::DELETE, &paths::entity(paths::INTENTS, id, Some(ovn)), None).await
    }

    pub async fn query_constraints(&self, area: &Volume4D) -> Result<QueryConstraintReferencesResponse> {
        let body = QueryParameters { area_of_interest: Some(area.clone()) };
        self.send(reqwest::Method::POST, "/dss/v1/constraint_references/query", Some(&body)).await
    }

    pub async fn get_constraint(&self, id: &str) -> Result<GetConstraintReferenceResponse> {
        self.send::<(), _>(reqwest::Method::GET, &paths::entity(paths::CONSTRAINTS, id, None), None).await
    }

    pub async fn put_constraint(
        &self,
        id: &str,
        ovn: Option<&str>,
        body: &PutConstraintReferenceParameters,
    ) -> Result<ChangeConstraintReferenceResponse> {
        self.send(reqwest::Method::PUT, &paths::entity(paths::CONSTRAINTS, id, ovn), Some(body)).await
    }

    pub async fn delete_constraint(&self, id: &str, ovn: &str) -> Result<ChangeConstraintReferenceResponse> {
        self.send::<(), _>(reqwest::Method::DELETE, &paths::entity(paths::CONSTRAINTS, id, Some(ovn)), None).await
    }

    pub async fn put_subscription(
        &self,
        id: &str,
        version: Option<&str>,
        body: &PutSubscriptionParameters,
    ) -> Result<PutSubscriptionResponse> {
        self.send(reqwest::Method::PUT, &paths::entity(paths::SUBSCRIPTIONS, id, version), Some(body)).await
    }

    pub async fn get_subscription(&self, id: &str) -> Result<GetSubscriptionResponse> {
        self.send::<(), _>(reqwest::Method::GET, &paths::entity(paths::SUBSCRIPTIONS, id, None), None).await
    }

    pub async fn delete_subscription(&self, id: &str, version: &str) -> Result<DeleteSubscriptionResponse> {
        self.send::<(), _>(reqwest::Method::DELETE, &format!("/dss/v1/subscriptions/{id}/{version}"), None).await
    }

    /// F3411-22a: creates (no `version`) or updates an identification service area.
    pub async fn put_isa(&self, id: &str, version: Option<&str>, body: &RidPutParameters) -> Result<IsaChangeResponse> {
        let path = match version {
            Some(v) => format!("{}/{id}/{v}", paths::RID_ISAS),
            None => format!("{}/{id}", paths::RID_ISAS),
        };
        self.send(reqwest::Method::PUT, &path, Some(body)).await
    }

    /// F3411-22a: one identification service area.
    pub async fn get_isa(&self, id: &str) -> Result<GetIsaResponse> {
        self.send::<(), _>(reqwest::Method::GET, &format!("{}/{id}", paths::RID_ISAS), None).await
    }

    /// F3411-22a: deletes an identification service area at `version`.
    pub async fn delete_isa(&self, id: &str, version: &str) -> Result<IsaChangeResponse> {
        self.send::<(), _>(reqwest::Method::DELETE, &format!("{}/{id}/{version}", paths::RID_ISAS), None).await
    }

    /// F3411-22a: creates a Remote ID subscription (the ISAs in its area come with the answer).
    pub async fn put_rid_subscription(&self, id: &str, body: &RidPutParameters) -> Result<PutRidSubscriptionResponse> {
        self.send(reqwest::Method::PUT, &format!("{}/{id}", paths::RID_SUBSCRIPTIONS), Some(body)).await
    }

    /// F3411-22a: deletes a Remote ID subscription at `version`.
    pub async fn delete_rid_subscription(&self, id: &str, version: &str) -> Result<RidSubscriptionResponse> {
        self.send::<(), _>(reqwest::Method::DELETE, &format!("{}/{id}/{version}", paths::RID_SUBSCRIPTIONS), None).await
    }

    /// F3411-22a: the ISAs in `area` (a `lat,lng,...` polygon string), now.
    pub async fn search_isas(&self, area: &str) -> Result<SearchIsasResponse> {
        let url = format!("{}?area={area}", paths::RID_ISAS);
        self.send::<(), _>(reqwest::Method::GET, &url, None).await
    }

    pub async fn get_availability(&self, uss: &str) -> Result<UssAvailabilityStatusResponse> {
        self.send::<(), _>(reqwest::Method::GET, &format!("/dss/v1/uss_availability/{uss}"), None).await
    }

    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(format!("{}/healthy", self.base)).send().await, Ok(r) if r.status().is_success())
    }
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn routes_leave_out_ids_and_versions() {
        let id = "0f5c6b2e-4d1a-4c43-9b3e-2f6a1d7c8e90";
        for (path, route) in [
            (format!("/dss/v1/operational_intent_references/{id}"), "/dss/v1/operational_intent_references"),
            (format!("/dss/v1/operational_intent_references/{id}/ovnABC"), "/dss/v1/operational_intent_references"),
            ("/dss/v1/operational_intent_references/query".into(), "/dss/v1/operational_intent_references/query"),
            (format!("/rid/v2/dss/identification_service_areas/{id}"), "/rid/v2/dss/identification_service_areas"),
            ("/dss/v1/subscriptions/query?x=1".into(), "/dss/v1/subscriptions/query"),
        ] {
            assert_eq!(route_label(&path), route, "{path}");
        }
    }
}
