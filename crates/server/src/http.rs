//! Serving HTTP/1.1 the way a public service must: every connection is bounded in time and the
//! number of connections is bounded below the process's file limit, so no client, without a
//! token, can hold the server up.
//!
//! `axum::serve` sets no timeouts (hyper gets no timer) and accepts until `accept` fails with
//! EMFILE, after which nobody is answered until some client lets go. Here:
//! - a request head must arrive within `header_timeout` of its first byte (slow headers are cut
//!   off), and a connection with no request in flight and no bytes for `idle_timeout` is closed;
//! - a request that takes longer than `request_timeout` is answered 503 in `ErrorResponse` shape
//!   (the reference DSS uses 10 s);
//! - at `max_connections`, a new connection makes the connection idle for longest (no request in
//!   flight: an idle keep-alive or a client dribbling its headers) close, so `/healthy` and real
//!   requests are still served while idle connections are held off; when every connection is
//!   busy the new one is closed at once;
//! - a request body must arrive within `body_timeout` of its head, or the request is answered
//!   408 and the connection closed; while its body is arriving a connection counts as idle for
//!   eviction (1,100 clients dribbling bodies cannot hold every descriptor);
//! - an answer given before the body was read (401, 429, ...) first drains a small body (up to
//!   [`DRAIN_LIMIT`]) so the connection stays usable, and otherwise says `Connection: close`:
//!   a pooled client never writes into a connection the server dropped;
//! - on shutdown the listener closes, idle connections close, requests in flight get `grace`
//!   to finish, and whatever remains is dropped.
//!
//! - with TLS ([`crate::tls`]) the handshake must complete within `header_timeout`; a
//!   connection still in its handshake counts as idle for eviction.
//!
//! Each request carries its client address as [`axum::extract::ConnectInfo`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// File descriptors kept free for everything but client connections (the store's files,
/// connections to etcd or peers, logs).
const RESERVED_FDS: u64 = 64;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte of a request head to its end.
    pub header_timeout: Duration,
    /// A connection with no request in flight and no bytes received for this long is closed.
    pub idle_timeout: Duration,
    /// A request running longer is answered 503; `None` for no limit.
    pub request_timeout: Option<Duration>,
    /// From the end of a request head to the end of its body.
    pub body_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Some(Duration::from_secs(10)),
            body_timeout: Duration::from_secs(10),
            max_connections: default_max_connections(),
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit now in force.
pub fn raise_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The default connection cap: the open-file limit in force, less a reserve.
pub fn default_max_connections() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX)
}

/// What the server knows of one connection.
struct Conn {
    in_flight: AtomicUsize,
    /// Milliseconds since the server's epoch: the connection's last completed request (or its
    /// acceptance).
    last_active: AtomicU64,
    /// Milliseconds since the epoch, plus one, when the first byte of the request head being
    /// read arrived; 0 when no head is being read.
    head_started: AtomicU64,
    /// A request's body is still arriving: the connection waits on its client, like an idle one.
    body_pending: AtomicBool,
    closing: AtomicBool,
    close: Notify,
}

struct Shared {
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Asks the connection idle for longest to close; false when every connection is busy.
    fn evict_idle(&self) -> bool {
        let conns = self.conns.lock();
        let victim = conns
            .values()
            .filter(|c| {
                (c.in_flight.load(Ordering::Acquire) == 0 || c.body_pending.load(Ordering::Acquire))
                    && !c.closing.load(Ordering::Acquire)
            })
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.closing.store(true, Ordering::Release);
                c.close.notify_one();
                metrics::counter!("http_connections_evicted_total").increment(1);
                true
            }
            None => false,
        }
    }
}

/// The connection's socket, noting when a request head starts arriving.
struct Watched<T> {
    io: T,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.in_flight.load(Ordering::Acquire) == 0
            && self.conn.head_started.load(Ordering::Relaxed) == 0
        {
            let now = self.shared.now_ms() + 1;
            self.conn.head_started.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Counts a request as in flight for as long as it lives (a dropped request counts too).
struct InFlight {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.last_active.store(self.shared.now_ms(), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Largest unread body drained after an early answer so the connection can be kept.
pub const DRAIN_LIMIT: u64 = 64 * 1024;

/// What became of a request's body, shared between the body given to the app and the
/// connection that answers.
#[derive(Default)]
struct BodyState {
    /// The body did not arrive within the body timeout.
    timed_out: AtomicBool,
    /// The body, handed back unread when the app dropped it before its end.
    unread: Mutex<Option<hyper::body::Incoming>>,
}

/// The request body as the app sees it: the client's, with a deadline, that marks the
/// connection as waiting on its client while it arrives and hands itself back if dropped unread.
struct TimedBody {
    inner: Option<hyper::body::Incoming>,
    /// When the body must have arrived.
    due: tokio::time::Instant,
    /// The timer, armed only once the body makes the app wait (most bodies arrive with their
    /// head, and a timer per request costs more than the rest of this wrapper).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    state: Arc<BodyState>,
    conn: Arc<Conn>,
}

impl TimedBody {
    fn new(inner: hyper::body::Incoming, state: Arc<BodyState>, conn: Arc<Conn>, timeout: Duration) -> Self {
        use hyper::body::Body as _;
        let done = inner.is_end_stream();
        conn.body_pending.store(!done, Ordering::Release);
        Self {
            inner: (!done).then_some(inner),
            due: tokio::time::Instant::now() + timeout,
            deadline: None,
            state,
            conn,
        }
    }

    fn finished(&mut self) {
        self.inner = None;
        self.conn.body_pending.store(false, Ordering::Release);
    }
}

impl hyper::body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                self.finished();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if self.inner.as_ref().is_some_and(hyper::body::Body::is_end_stream) {
                    self.finished();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let due = self.due;
                let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if deadline.as_mut().poll(cx).is_ready() {
                    self.state.timed_out.store(true, Ordering::Release);
                    self.finished();
                    return Poll::Ready(Some(Err("the request body did not arrive within the body timeout".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.as_ref().map_or_else(|| hyper::body::SizeHint::with_exact(0), hyper::body::Body::size_hint)
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        // Dropped before its end (an answer given without reading it): hand it back so the
        // connection can drain it or close.
        if let Some(inner) = self.inner.take() {
            *self.state.unread.lock() = Some(inner);
        }
    }
}

/// After the app answered: a body that timed out turns the answer into 408 and closes the
/// connection; a body left unread is drained if small (the connection is kept), else the
/// answer says `Connection: close`.
async fn finish_body(mut response: Response, state: &BodyState, conn: &Conn) -> Response {
    use hyper::body::Body as _;
    if state.timed_out.load(Ordering::Acquire) {
        metrics::counter!("http_body_timeouts_total").increment(1);
        conn.body_pending.store(false, Ordering::Release);
        let mut r = (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(
                serde_json::json!({"message": "the request body did not arrive in time; send the whole body promptly"}),
            ),
        )
            .into_response();
        r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        return r;
    }
    let unread = state.unread.lock().take();
    if let Some(mut body) = unread {
        let small = body.size_hint().upper().is_some_and(|n| n <= DRAIN_LIMIT);
        let mut drained = 0u64;
        let mut complete = false;
        if small || body.size_hint().upper().is_none() {
            // Read and discard, bounded in bytes and by the same body deadline.
            let drain = async {
                while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    match frame {
                        Ok(f) => {
                            drained += f.data_ref().map_or(0, |d| d.len() as u64);
                            if drained > DRAIN_LIMIT {
                                return false;
                            }
                        }
                        Err(_) => return false,
                    }
                }
                true
            };
            complete = tokio::time::timeout(Duration::from_secs(2), drain).await.unwrap_or(false);
        }
        conn.body_pending.store(false, Ordering::Release);
        if !complete {
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
    }
    response
}

/// Answers 503 in `ErrorResponse` shape when the request runs past `limit`.
async fn time_limit(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            metrics::counter!("http_requests_timed_out_total").increment(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"message": format!(
                    "the request did not complete within {} s; it may or may not have taken effect: read before retrying",
                    limit.as_secs_f64()
                )})),
            )
                .into_response()
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most `grace`.
/// Returns whether every connection finished within the grace period.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<crate::tls::Tls>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let app = match limits.request_timeout {
        Some(limit) => {
            app.layer(axum::middleware::from_fn(move |req: Request, next: Next| time_limit(limit, req, next)))
        }
        None => app,
    };
    let shared = Arc::new(Shared { epoch: Instant::now(), conns: Mutex::new(HashMap::new()) });
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    let mut last_accept_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // Reap finished connection tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (or a transient network error): free one and retry.
                if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "accept failed; closing the longest-idle connection");
                    last_accept_warning = Some(Instant::now());
                }
                shared.evict_idle();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if shared.conns.lock().len() >= limits.max_connections {
            if !shared.evict_idle() {
                // Every connection has a request in flight: refuse this one rather than exceed
                // the cap.
                metrics::counter!("http_connections_refused_total").increment(1);
                drop(stream);
                continue;
            }
            // Let the evicted connection close before taking on more.
            tokio::task::yield_now().await;
        }
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(shared.now_ms()),
            head_started: AtomicU64::new(0),
            body_pending: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        shared.conns.lock().insert(id, conn.clone());
        let (app, shared) = (app.clone(), shared.clone());
        match &tls {
            None => tasks.spawn(connection(stream, peer, app, limits, conn, shared, id)),
            Some(tls) => {
                let acceptor = tls.acceptor().clone();
                tasks.spawn(async move {
                    // Bounded like a request head; given up at once when asked to close.
                    let handshake = tokio::select! {
                        h = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)) => h,
                        () = conn.close.notified() => Ok(Err(std::io::Error::other("closing"))),
                    };
                    match handshake {
                        Ok(Ok(stream)) => connection(stream, peer, app, limits, conn, shared, id).await,
                        Ok(Err(e)) => {
                            metrics::counter!("http_tls_handshakes_failed_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            shared.conns.lock().remove(&id);
                        }
                        Err(_) => {
                            metrics::counter!("http_header_timeouts_total").increment(1);
                            tracing::debug!(%peer, "TLS handshake not completed in time: closing");
                            shared.conns.lock().remove(&id);
                        }
                    }
                })
            }
        };
    }
    drop(listener);
    // Stop: idle connections close now, busy ones after their response.
    for c in shared.conns.lock().values() {
        c.closing.store(true, Ordering::Release);
        c.close.notify_one();
    }
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await.is_ok();
    tasks.abort_all();
    drained
}

async fn connection<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: T,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    id: u64,
) {
    let io = TokioIo::new(Watched { io: stream, conn: conn.clone(), shared: shared.clone() });
    let (svc_conn, svc_shared) = (conn.clone(), shared.clone());
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        svc_conn.in_flight.fetch_add(1, Ordering::AcqRel);
        svc_conn.head_started.store(0, Ordering::Relaxed);
        let guard = InFlight { conn: svc_conn.clone(), shared: svc_shared.clone() };
        let (mut parts, incoming) = req.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let body = Arc::new(BodyState::default());
        let timed = TimedBody::new(incoming, body.clone(), svc_conn.clone(), body_timeout);
        let req = Request::from_parts(parts, axum::body::Body::new(timed));
        let call = tower::ServiceExt::oneshot(app.clone(), req);
        let conn = svc_conn.clone();
        async move {
            let response = match call.await {
                Ok(r) => finish_body(r, &body, &conn).await,
                Err(never) => match never {},
            };
            drop(guard);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header timeout is enforced below from the head's first byte; hyper's own would also
    // run while a keep-alive connection waits for its next request.
    builder.timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let header_ms = u64::try_from(limits.header_timeout.as_millis()).unwrap_or(u64::MAX);
    let idle_ms = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_millis(1000));
    // Once asked to close: the time by which the connection must be gone.
    let mut closing_since: Option<Instant> = None;
    let close_within = limits.request_timeout.unwrap_or(Duration::from_secs(30)) + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            () = conn.close.notified(), if closing_since.is_none() => {
                // Idle, or still waiting on its client for a body: closed at once.
                if conn.in_flight.load(Ordering::Acquire) == 0 || conn.body_pending.load(Ordering::Acquire) {
                    break;
                }
                // Let the request in flight finish; no next one.
                served.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            () = tokio::time::sleep(tick) => {
                let now = shared.now_ms();
                let head = conn.head_started.load(Ordering::Relaxed);
                let busy = conn.in_flight.load(Ordering::Acquire) > 0;
                if !busy && head != 0 && now.saturating_sub(head - 1) > header_ms {
                    metrics::counter!("http_header_timeouts_total").increment(1);
                    tracing::debug!(%peer, "request head not received in time: closing");
                    break;
                }
                if !busy && head == 0 && now.saturating_sub(conn.last_active.load(Ordering::Relaxed)) > idle_ms {
                    break;
                }
                if closing_since.is_some_and(|t| !busy || t.elapsed() > close_within) {
                    break;
                }
            }
        }
    }
    shared.conns.lock().remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    /// A request running past the request timeout gets 503 in `ErrorResponse` shape; a quick
    /// one is answered as usual; shutdown waits for neither beyond the grace period.
    #[tokio::test]
    async fn a_slow_request_is_answered_503() {
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/quick", axum::routing::get(|| async { "quick" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let limits = Limits { request_timeout: Some(Duration::from_millis(200)), ..Limits::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            None,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        let started = Instant::now();
        let slow = get(addr, "/slow").await;
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(slow.starts_with("HTTP/1.1 503"), "{slow}");
        let body = slow.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert!(v["message"].as_str().is_some_and(|m| m.contains("did not complete")), "{v}");
        let quick = get(addr, "/quick").await;
        assert!(quick.starts_with("HTTP/1.1 200") && quick.ends_with("quick"), "{quick}");
        let _ = stop.send(());
        let drained = tokio::time::timeout(Duration::from_secs(3), server).await.expect("stops").expect("joins");
        assert!(drained);
    }
}
