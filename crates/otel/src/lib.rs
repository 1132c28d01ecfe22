//! OpenTelemetry traces (`--otlp-endpoint URL`): every request a DSS or a participant serves
//! is a server span, every call a participant makes to the DSS or a peer a client span, and the
//! W3C `traceparent` header carries the trace across processes, so one plan is one trace from
//! the operator's request through the DSS and the peers it asked. Spans go out in batches over
//! OTLP/HTTP (protobuf) to `{URL}/v1/traces`, through our own HTTP client (its trust roots and
//! `--ca-cert`), on the process's tokio runtime.
//!
//! Without the flag nothing is exported and the spans cost a disabled callsite check: their
//! target ([`TARGET`]) is enabled only for the exporting layer, and left out of the logs.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The tracing target of every span exported (and of nothing logged).
pub const TARGET: &str = "otel";

/// How long spans wait to be sent in a batch.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Time allowed to one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The exporter while the process runs; dropping it sends what is left.
pub struct Exporter {
    provider: SdkTracerProvider,
    /// The exports' own runtime (one thread), so that exporting never depends on, nor
    /// competes for, a server's runtime, and may start before it.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: the last traces were not all sent: {e}");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A tracing layer exporting the [`TARGET`] spans to the collector at `endpoint`
/// (`http(s)://host:port`, `/v1/traces` appended unless given) as `service`, and the exporter
/// to keep alive; `http` (our trust roots) sends the batches.
pub fn layer<S>(
    endpoint: &str,
    service: &str,
    http: reqwest::Client,
) -> Result<(impl tracing_subscriber::Layer<S>, Exporter), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let endpoint = traces_url(endpoint)?;
    let exports = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the trace exporter: {e}"))?;
    let runtime = exports.handle().clone();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime { http, runtime })
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(BATCH_DELAY).build())
        .build();
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
    let tracer = provider.tracer("deconflict");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO));
    Ok((layer, Exporter { provider, runtime: Some(exports) }))
}

use tracing_subscriber::Layer as _;

/// `{endpoint}/v1/traces`, the OTLP/HTTP traces path, unless already there.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        return Err(format!("--otlp-endpoint {endpoint}: an http:// or https:// URL (e.g. http://127.0.0.1:4318)"));
    }
    Ok(if e.ends_with("/v1/traces") { e.to_owned() } else { format!("{e}/v1/traces") })
}

/// Sends the exporter's requests with our reqwest client on our runtime (the batch processor
/// runs on a thread of its own, without a runtime).
#[derive(Debug)]
struct OnRuntime {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let mut req = http.request(parts.method, parts.uri.to_string()).body(body).timeout(EXPORT_TIMEOUT);
            for (name, value) in &parts.headers {
                req = req.header(name, value);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            Ok::<_, reqwest::Error>(out)
        });
        Ok(sent.await??)
    }
}

/// The server span of one request (`otel.kind = server`), child of the caller's span when the
/// request carries a `traceparent`. Install with `axum::middleware::from_fn(otel::serve)` after
/// the routes (so the route template is known).
pub async fn serve(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    span.record("otel.name", format!("{} {route}", req.method()));
    span.record("http.route", route.as_str());
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    let _ = span.set_parent(parent);
    let response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// A client span for a call about to be made (`otel.kind = client`), named `name` (e.g.
/// `PUT /dss/v1/operational_intent_references`); make the call inside it and give its
/// headers [`inject`]. `name` is formatted only when spans are exported (pass
/// `format_args!`, not a `String`, so that a disabled span costs no allocation).
pub fn client_span(name: impl std::fmt::Display) -> tracing::Span {
    tracing::info_span!(target: TARGET, "call", otel.name = %name, otel.kind = "client")
}

/// Adds the current span's `traceparent` to an outgoing request's headers (nothing when no
/// span is exported).
pub fn inject(headers: &mut reqwest::header::HeaderMap) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// [`inject`] on a request builder.
pub fn traced(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    inject(&mut headers);
    if headers.is_empty() {
        req
    } else {
        req.headers(headers)
    }
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (reqwest::header::HeaderName::from_bytes(key.as_bytes()), reqwest::header::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://127.0.0.1:4318").as_deref(), Ok("http://127.0.0.1:4318/v1/traces"));
        assert_eq!(traces_url("https://otel.example/v1/traces/").as_deref(), Ok("https://otel.example/v1/traces"));
        assert!(traces_url("127.0.0.1:4318").is_err_and(|e| e.contains("http://")));
    }
}
