//! The real ports: the DSS through `client` (its answers converted to domain references here,
//! once), peers over HTTP (bounded in time and size, URLs built only by `model::peer_url`, https unless allowed), the
//! system clock and random UUIDv4 ids.

use std::sync::Arc;
use std::time::Duration;

use client::{ClientError, DssClient};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use geo4d::{Timestamp, Volume4D};
use tracing::Instrument;

use crate::domain::{Kind, Reference, Subscriber};
use crate::ports::{
    Attempt, Clock, Dss, DssFailure, Ids, IntentWrite, IsaWritten, Peers, RidSubscriber, SubscriptionWrite, Written,
};
use crate::tokens::TokenSource;
use crate::MAX_PEER_ANSWER_BYTES;

impl From<ClientError> for DssFailure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Conflict(c)
                if c.missing_operational_intents.is_empty() && c.missing_constraints.is_empty() =>
            {
                DssFailure::StaleOvn(c.message)
            }
            ClientError::Conflict(c) => DssFailure::KeyMissing(c.message),
            ClientError::Status { status: 404, message } => DssFailure::NotFound(message),
            ClientError::Status { status: status @ (400 | 413), message } => DssFailure::Refused { status, message },
            ClientError::Busy { status, message, retry_after_s } => DssFailure::Busy { status, message, retry_after_s },
            other => DssFailure::Failed(other.to_string()),
        }
    }
}

/// The DSS over HTTP, with a token of ours per call.
pub struct HttpDss {
    http: reqwest::Client,
    url: String,
    tokens: Arc<TokenSource>,
}

impl HttpDss {
    pub fn new(http: reqwest::Client, url: &str, tokens: Arc<TokenSource>) -> Self {
        HttpDss { http, url: url.to_owned(), tokens }
    }

    async fn client(&self) -> Result<DssClient, DssFailure> {
        let token = self
            .tokens
            .token_for(&self.url)
            .await
            .map_err(|e| DssFailure::Failed(format!("no token for the DSS: {e}")))?;
        Ok(DssClient::new(self.http.clone(), &self.url, token))
    }
}

fn not_found_is_none<T>(r: Result<T, ClientError>) -> Result<Option<T>, DssFailure> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ClientError::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn subscribers(list: &[api::SubscriberToNotify]) -> Vec<Subscriber> {
    list.iter().map(Subscriber::from_wire).collect()
}

/// `s` percent-encoded as one URL path segment.
fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn rid_subscribers(list: &[api::RidSubscriberToNotify]) -> Vec<RidSubscriber> {
    list.iter()
        .map(|s| RidSubscriber {
            url: s.url.clone(),
            subscriptions: s.subscriptions.iter().map(|x| (x.subscription_id.clone(), x.notification_index)).collect(),
        })
        .collect()
}

impl Dss for HttpDss {
    fn query<'a>(&'a self, kind: Kind, area: &'a Volume4D) -> BoxFuture<'a, Result<Vec<Reference>, DssFailure>> {
        async move {
            let dss = self.client().await?;
            let wire = api::volume_to_wire(area);
            Ok(match kind {
                Kind::Intent => dss
                    .query_intents(&wire)
                    .await?
                    .operational_intent_references
                    .iter()
                    .map(Reference::from_intent_wire)
                    .collect(),
                Kind::Constraint => dss
                    .query_constraints(&wire)
                    .await?
                    .constraint_references
                    .iter()
                    .map(Reference::from_constraint_wire)
                    .collect(),
            })
        }
        .boxed()
    }

    fn get<'a>(&'a self, kind: Kind, id: &'a str) -> BoxFuture<'a, Result<Option<Reference>, DssFailure>> {
        async move {
            let dss = self.client().await?;
            Ok(match kind {
                Kind::Intent => not_found_is_none(dss.get_intent(id).await)?
                    .map(|r| Reference::from_intent_wire(&r.operational_intent_reference)),
                Kind::Constraint => not_found_is_none(dss.get_constraint(id).await)?
                    .map(|r| Reference::from_constraint_wire(&r.constraint_reference)),
            })
        }
        .boxed()
    }

    fn put_intent<'a>(
        &'a self,
        id: &'a str,
        ovn: Option<&'a str>,
        write: IntentWrite<'a>,
    ) -> BoxFuture<'a, Result<Written, DssFailure>> {
        async move {
            let body = api::PutOperationalIntentReferenceParameters {
                extents: api::extents_to_wire(write.volumes),
                key: Some(write.key.to_vec()),
                state: write.state.as_str().to_owned(),
                uss_base_url: write.base_url.to_owned(),
                subscription_id: None,
                new_subscription: Some(api::ImplicitSubscriptionParameters {
                    uss_base_url: write.base_url.to_owned(),
                    notify_for_constraints: Some(write.notify_for_constraints),
                }),
                requested_ovn_suffix: None,
            };
            let resp = self.client().await?.put_intent(id, ovn, &body).await?;
            Ok(Written {
                reference: Reference::from_intent_wire(&resp.operational_intent_reference),
                subscribers: subscribers(&resp.subscribers),
            })
        }
        .boxed()
    }

    fn put_constraint<'a>(
        &'a self,
        id: &'a str,
        volumes: &'a [Volume4D],
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<Written, DssFailure>> {
        async move {
            let body = api::PutConstraintReferenceParameters {
                extents: api::extents_to_wire(volumes),
                uss_base_url: base_url.to_owned(),
            };
            let resp = self.client().await?.put_constraint(id, None, &body).await?;
            Ok(Written {
                reference: Reference::from_constraint_wire(&resp.constraint_reference),
                subscribers: subscribers(&resp.subscribers),
            })
        }
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        kind: Kind,
        id: &'a str,
        ovn: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Subscriber>>, DssFailure>> {
        async move {
            let dss = self.client().await?;
            Ok(match kind {
                Kind::Intent => {
                    not_found_is_none(dss.delete_intent(id, ovn).await)?.map(|r| subscribers(&r.subscribers))
                }
                Kind::Constraint => {
                    not_found_is_none(dss.delete_constraint(id, ovn).await)?.map(|r| subscribers(&r.subscribers))
                }
            })
        }
        .boxed()
    }

    fn put_isa<'a>(
        &'a self,
        id: &'a str,
        version: Option<&'a str>,
        volume: &'a Volume4D,
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<IsaWritten, DssFailure>> {
        async move {
            let dss = self.client().await?;
            let body =
                api::RidPutParameters { extents: api::volume_to_wire(volume), uss_base_url: base_url.to_owned() };
            let r = dss.put_isa(id, version, &body).await?;
            Ok(IsaWritten { service_area: r.service_area, subscribers: rid_subscribers(&r.subscribers) })
        }
        .boxed()
    }

    fn get_isa<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<api::IdentificationServiceArea>, DssFailure>> {
        async move {
            let dss = self.client().await?;
            Ok(not_found_is_none(dss.get_isa(id).await)?.map(|r| r.service_area))
        }
        .boxed()
    }

    fn delete_isa<'a>(
        &'a self,
        id: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<RidSubscriber>>, DssFailure>> {
        async move {
            let dss = self.client().await?;
            Ok(not_found_is_none(dss.delete_isa(id, version).await)?.map(|r| rid_subscribers(&r.subscribers)))
        }
        .boxed()
    }

    fn put_rid_subscription<'a>(
        &'a self,
        id: &'a str,
        volume: &'a Volume4D,
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<(String, Vec<api::IdentificationServiceArea>), DssFailure>> {
        async move {
            let dss = self.client().await?;
            let body =
                api::RidPutParameters { extents: api::volume_to_wire(volume), uss_base_url: base_url.to_owned() };
            let r = dss.put_rid_subscription(id, &body).await?;
            Ok((r.subscription.version, r.service_areas))
        }
        .boxed()
    }

    fn delete_rid_subscription<'a>(&'a self, id: &'a str, version: &'a str) -> BoxFuture<'a, Result<(), DssFailure>> {
        async move {
            let dss = self.client().await?;
            not_found_is_none(dss.delete_rid_subscription(id, version).await)?;
            Ok(())
        }
        .boxed()
    }

    fn search_isas<'a>(
        &'a self,
        area: &'a str,
    ) -> BoxFuture<'a, Result<Vec<api::IdentificationServiceArea>, DssFailure>> {
        async move { Ok(self.client().await?.search_isas(area).await?.service_areas) }.boxed()
    }

    fn put_subscription<'a>(
        &'a self,
        id: &'a str,
        write: SubscriptionWrite<'a>,
    ) -> BoxFuture<'a, Result<(), DssFailure>> {
        async move {
            let body = api::PutSubscriptionParameters {
                extents: api::volume_to_wire(write.volume),
                uss_base_url: write.base_url.to_owned(),
                notify_for_operational_intents: Some(write.notify_for_intents),
                notify_for_constraints: Some(write.notify_for_constraints),
            };
            self.client().await?.put_subscription(id, None, &body).await?;
            Ok(())
        }
        .boxed()
    }

    fn has_subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, DssFailure>> {
        async move { Ok(not_found_is_none(self.client().await?.get_subscription(id).await)?.is_some()) }.boxed()
    }
}

/// Other participants over HTTP: a token of ours for each, every answer bounded in time
/// (connect and whole answer) and size.
pub struct HttpPeers {
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
    timeout: Duration,
    /// Call peers at `http://` base URLs (`--allow-http-base-urls`); otherwise only `https://`.
    allow_http: bool,
}

impl HttpPeers {
    pub fn new(http: reqwest::Client, tokens: Arc<TokenSource>, timeout: Duration, allow_http: bool) -> Self {
        HttpPeers { http, tokens, timeout, allow_http }
    }

    /// The URL of `path` under a peer's base URL (`model::peer_url`), refused when it is plain
    /// `http://` and this participant was not told to allow that: a peer's details and
    /// notifications travel encrypted, as the reference DSS's `allow_http_base_urls` rule has it.
    fn url(&self, base: &str, path: &str) -> Result<String, String> {
        let url = model::peer_url(base, path)?;
        if !self.allow_http && !url.starts_with("https://") {
            return Err(format!(
                "must use https (this participant was started without --allow-http-base-urls), got `{base}`"
            ));
        }
        Ok(url)
    }

    /// GETs `path` under a peer's base URL and reads it as `T`; `call` names the kind of
    /// request in the peer latency histogram.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        base: &str,
        path: &str,
    ) -> Result<T, String> {
        self.get_query(call, base, path, &[]).await
    }

    /// [`Self::get`] with query parameters added to the URL's own.
    async fn get_query<T: serde::de::DeserializeOwned>(
        &self,
        call: &'static str,
        base: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, String> {
        let started = std::time::Instant::now();
        let span = otel::client_span(format_args!("GET peer {call}"));
        let result = self.get_query_timed(base, path, query).instrument(span).await;
        peer_latency(call, if result.is_ok() { "ok" } else { "failed" }, started);
        result
    }

    async fn get_query_timed<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, String> {
        // Appended to the base URL's path, its query kept; a base URL with a fragment, user
        // information or another scheme is never called (the entity stays unverifiable).
        let url = self.url(base, path).map_err(|e| format!("its uss_base_url {e}"))?;
        let token = self.tokens.token_for(&url).await?;
        let work = async {
            let mut resp = otel::traced(self.http.get(&url).query(query).bearer_auth(token))
                .send()
                .await
                .map_err(|e| format!("unreachable: {}", client::tls::error_chain(&e)))?;
            if !resp.status().is_success() {
                return Err(format!("its USS answered HTTP {}", resp.status().as_u16()));
            }
            if resp.content_length().is_some_and(|n| n > MAX_PEER_ANSWER_BYTES as u64) {
                return Err(format!("its USS's answer is larger than {MAX_PEER_ANSWER_BYTES} bytes and was refused"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("its USS's answer broke off: {e}"))? {
                if body.len() + chunk.len() > MAX_PEER_ANSWER_BYTES {
                    return Err(format!("its USS's answer exceeded {MAX_PEER_ANSWER_BYTES} bytes and was cut off"));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body).map_err(|e| format!("its USS sent details that cannot be read: {e}"))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("its USS did not answer within {} s", self.timeout.as_secs()))?
    }
}

/// One call to a peer in `uss_peer_request_seconds` (by kind of call and outcome).
fn peer_latency(call: &'static str, outcome: &'static str, started: std::time::Instant) {
    metrics::histogram!("uss_peer_request_seconds", "call" => call, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

impl Peers for HttpPeers {
    fn intent_details<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<api::OperationalIntent, String>> {
        async move {
            let got: api::GetOperationalIntentDetailsResponse =
                self.get("intent_details", &r.base_url, &format!("{}/{}", Kind::Intent.uss_path(), r.id)).await?;
            Ok(got.operational_intent)
        }
        .boxed()
    }

    fn constraint_details<'a>(&'a self, r: &'a Reference) -> BoxFuture<'a, Result<api::Constraint, String>> {
        async move {
            let got: api::GetConstraintDetailsResponse = self
                .get("constraint_details", &r.base_url, &format!("{}/{}", Kind::Constraint.uss_path(), r.id))
                .await?;
            Ok(got.constraint)
        }
        .boxed()
    }

    fn intent_telemetry<'a>(
        &'a self,
        r: &'a Reference,
    ) -> BoxFuture<'a, Result<api::GetOperationalIntentTelemetryResponse, String>> {
        async move {
            self.get("intent_telemetry", &r.base_url, &format!("{}/{}/telemetry", Kind::Intent.uss_path(), r.id)).await
        }
        .boxed()
    }

    fn rid_flights<'a>(
        &'a self,
        base_url: &'a str,
        view: &'a str,
    ) -> BoxFuture<'a, Result<api::GetFlightsResponse, String>> {
        async move { self.get_query("rid_flights", base_url, "/uss/flights", &[("view", view.to_owned())]).await }
            .boxed()
    }

    fn rid_flight_details<'a>(
        &'a self,
        base_url: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, String>> {
        async move {
            // The id comes from a peer: it is a path segment, never a path.
            let segment: String = url_segment(id);
            self.get("rid_flight_details", base_url, &format!("/uss/flights/{segment}/details")).await
        }
        .boxed()
    }

    fn notify<'a>(&'a self, base_url: &'a str, path: &'a str, body: &'a serde_json::Value) -> BoxFuture<'a, Attempt> {
        async move {
            let url = match self.url(base_url, path) {
                Ok(url) => url,
                Err(e) => return Attempt::NotSent(format!("the subscriber's uss_base_url {e}")),
            };
            let token = match self.tokens.token_for(&url).await {
                Ok(t) => t,
                Err(e) => return Attempt::Unreachable(e),
            };
            let started = std::time::Instant::now();
            let span = otel::client_span("POST peer notify");
            let request = span.in_scope(|| otel::traced(self.http.post(&url).bearer_auth(token).json(body)));
            let attempt = match tokio::time::timeout(self.timeout, request.send().instrument(span)).await {
                Ok(Ok(r)) if r.status().is_success() => Attempt::Acknowledged(r.status().as_u16()),
                Ok(Ok(r)) => Attempt::Answered(r.status().as_u16()),
                Ok(Err(e)) => Attempt::Unreachable(format!("unreachable: {}", client::tls::error_chain(&e))),
                Err(_) => Attempt::TimedOut(self.timeout),
            };
            let outcome = if matches!(attempt, Attempt::Acknowledged(_)) { "ok" } else { "failed" };
            peer_latency("notify", outcome, started);
            attempt
        }
        .boxed()
    }
}

/// The system's clock; waits are tokio's.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_micros())
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        tokio::time::sleep(duration).boxed()
    }
}

/// Random UUIDv4 ids.
pub struct RandomIds;

impl Ids for RandomIds {
    fn new_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
}
