//! The generator's HTTP transport: one keep-alive HTTP/1.1 connection per simulated client,
//! straight on hyper, with the request line, `Host` and `Authorization` prepared once.
//!
//! The generator shares the machine's two cores with the DSS it measures, so whatever it spends
//! per request is taken from the server. reqwest (URL parsing, pool bookkeeping, header maps per
//! request) and fully typed decoding of every query answer made the generator about a third of
//! the machine's CPU in the city workload; this transport and [`GenClient::query_count`] keep
//! it small. Answers are still checked: status codes always, bodies decoded where the workload
//! uses them (OVNs, subscriber lists) and validated as JSON of the expected shape otherwise.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use api::{
    ChangeOperationalIntentReferenceResponse, GetOperationalIntentReferenceResponse,
    PutOperationalIntentReferenceParameters, PutSubscriptionParameters, PutSubscriptionResponse,
    QueryOperationalIntentReferenceResponse, QueryParameters, Volume4D,
};
use bytes::Bytes;
use client::paths::{self, INTENTS};
use client::{decode_response, ClientError};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Mutex;

type ClientResult<T> = std::result::Result<T, ClientError>;

/// One simulated client of the DSS: one token, one connection (re-opened if it drops).
pub struct GenClient {
    addr: SocketAddr,
    host: HeaderValue,
    auth: HeaderValue,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// A query answer checked for shape and counted, without building its references.
#[derive(Deserialize)]
struct CountedIntents {
    operational_intent_references: Vec<serde::de::IgnoredAny>,
}

const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl GenClient {
    /// `base` is `http://127.0.0.1:<port>`: the generator talks to loopback only.
    pub fn new(base: &str, token: &str) -> Result<Self> {
        let authority = base.strip_prefix("http://").context("the generator speaks plain http to loopback")?;
        let addr: SocketAddr = authority.parse().with_context(|| format!("`{authority}` is not an ip:port"))?;
        anyhow::ensure!(addr.ip().is_loopback(), "the generator talks to 127.0.0.1 only, not {addr}");
        Ok(Self {
            addr,
            host: HeaderValue::from_str(authority)?,
            auth: HeaderValue::from_str(&format!("Bearer {token}"))?,
            conn: Mutex::new(None),
        })
    }

    async fn connect(&self) -> ClientResult<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the connection closes; a failure shows up on the next request.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request; the status and the whole body. Bounded in time like everything the
    /// generator does.
    pub async fn raw(&self, method: Method, path: &str, body: Option<Bytes>) -> ClientResult<(u16, Bytes)> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => {
                *self.conn.lock().await = None;
                Err(ClientError::Transport(format!("no answer within {REQUEST_TIMEOUT:?}")))
            }
        }
    }

    async fn exchange(&self, method: Method, path: &str, body: Option<Bytes>) -> ClientResult<(u16, Bytes)> {
        let mut slot = self.conn.lock().await;
        let sender = match slot.as_mut() {
            Some(s) if !s.is_closed() => s,
            _ => slot.insert(self.connect().await?),
        };
        sender.ready().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut req = Request::builder().method(method).uri(path);
        if let Some(h) = req.headers_mut() {
            h.insert(HOST, self.host.clone());
            h.insert(AUTHORIZATION, self.auth.clone());
            if body.is_some() {
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                *slot = None;
                return Err(ClientError::Transport(e.to_string()));
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
        Ok((status, bytes))
    }

    async fn put<B: serde::Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> ClientResult<T> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Transport(e.to_string()))?;
        self.typed(Method::PUT, path, Some(Bytes::from(body))).await
    }

    async fn typed<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<Bytes>) -> ClientResult<T> {
        let (status, bytes) = self.raw(method, path, body).await?;
        decode_response(status, &bytes)
    }

    /// The JSON body of an area query, prepared ahead of a measured phase.
    pub fn query_body(area: &Volume4D) -> Bytes {
        Bytes::from(serde_json::to_vec(&QueryParameters { area_of_interest: Some(area.clone()) }).unwrap_or_default())
    }

    /// An area query whose answer is checked (status, JSON shape) and counted.
    pub async fn query_count(&self, body: Bytes) -> ClientResult<usize> {
        let r: CountedIntents = self.typed(Method::POST, &format!("{INTENTS}/query"), Some(body)).await?;
        Ok(r.operational_intent_references.len())
    }

    pub async fn query_intents(&self, area: &Volume4D) -> ClientResult<QueryOperationalIntentReferenceResponse> {
        self.typed(Method::POST, &format!("{INTENTS}/query"), Some(Self::query_body(area))).await
    }

    pub async fn get_intent(&self, id: &str) -> ClientResult<GetOperationalIntentReferenceResponse> {
        self.typed(Method::GET, &paths::entity(INTENTS, id, None), None).await
    }

    pub async fn put_intent(
        &self,
        id: &str,
        ovn: Option<&str>,
        body: &PutOperationalIntentReferenceParameters,
    ) -> ClientResult<ChangeOperationalIntentReferenceResponse> {
        self.put(&paths::entity(INTENTS, id, ovn), body).await
    }

    pub async fn delete_intent(&self, id: &str, ovn: &str) -> ClientResult<ChangeOperationalIntentReferenceResponse> {
        self.typed(Method::DELETE, &paths::entity(INTENTS, id, Some(ovn)), None).await
    }

    pub async fn put_subscription(
        &self,
        id: &str,
        version: Option<&str>,
        body: &PutSubscriptionParameters,
    ) -> ClientResult<PutSubscriptionResponse> {
        self.put(&paths::entity(paths::SUBSCRIPTIONS, id, version), body).await
    }

    pub async fn healthy(&self) -> bool {
        matches!(self.raw(Method::GET, "/healthy", None).await, Ok((200, _)))
    }
}
