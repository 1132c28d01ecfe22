//! The web map of the shared airspace: the page, its JavaScript, MapLibre GL JS and a Natural
//! Earth basemap, all embedded in the binary (no CDN, no tile server, no API key), and the one
//! view model both servers fill for it. The participant serves it on its operator listener
//! (`/`), the DSS read-only at `/map`; both serve the assets under `/map/assets/`.
//!
//! Our page (`web/src`, plain ES modules) is embedded as written; the libraries and the basemap
//! are built from npm packages by `npm ci && npm run build` (see `web/build.mjs`) into `assets`
//! and committed, so building the binary needs no Node.js; `scripts/test.sh` rebuilds them and
//! fails when the committed copy differs. This crate knows no store, no
//! participant and no DSS: it serves bytes and defines the JSON the page reads.

pub mod basemap;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::sync::Arc;

pub use basemap::{Basemap, BasemapInfo, TileKind, TileSource};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

/// The embedded files: name, content type, bytes. Our own page is embedded as written
/// (`web/src`); the libraries and the basemap come from the build (`assets`).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../web/src/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../web/src/app.js")),
    ("view.js", "text/javascript; charset=utf-8", include_bytes!("../web/src/view.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../web/src/style.css")),
    ("maplibre-gl.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/maplibre-gl.mjs")),
    ("maplibre-gl-worker.mjs", "text/javascript; charset=utf-8", include_bytes!("../assets/maplibre-gl-worker.mjs")),
    ("maplibre-gl.css", "text/css; charset=utf-8", include_bytes!("../assets/maplibre-gl.css")),
    ("basemap.json", "application/json", include_bytes!("../assets/basemap.json")),
    ("THIRD-PARTY-LICENSES.txt", "text/plain; charset=utf-8", include_bytes!("../assets/THIRD-PARTY-LICENSES.txt")),
];

/// The page's content security policy (see [`basemap`]): its own scripts, styles and data from
/// this origin only, MapLibre's module worker, a remote tile template's origin when one is
/// configured, and nothing else (no inline script, no framing, no form posts). The worker's
/// script carries the same policy, since a worker obeys its own response's.
fn asset_response(name: &str, csp: &HeaderValue) -> Response {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such map asset").into_response();
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page itself is small and always current; the libraries change only with a new binary.
    let cache = if name == "index.html" { "no-store" } else { "no-cache" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The page at `page_path` (it holds no data: it asks for a token and then reads the view with
/// it), its scripts, styles, libraries and offline basemap at `/map/assets/{file}`, what it
/// draws under the airspace at `/map/basemap`, and a local tile archive's tiles at
/// `/map/tiles/{z}/{x}/{y}`. None of these needs a token.
pub fn router<S: Clone + Send + Sync + 'static>(basemap: Arc<Basemap>, page_path: &str) -> Router<S> {
    Router::new()
        .route(page_path, get(|State(b): State<Arc<Basemap>>| async move { asset_response("index.html", &b.csp) }))
        .route(
            "/map/assets/{file}",
            get(|State(b): State<Arc<Basemap>>, Path(file): Path<String>| async move { asset_response(&file, &b.csp) }),
        )
        .route("/map/basemap", get(basemap::info))
        .route("/map/tiles/{z}/{x}/{y}", get(basemap::tile))
        .with_state(basemap)
}

/// Points per circle when one is drawn: enough to look round at any zoom a circle fits.
const CIRCLE_POINTS: usize = 72;

/// One 4D volume as the page draws it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapVolume {
    /// Its position in the entity's list (nominal volumes first, then off-nominal ones), as the
    /// participant's explanations number them.
    pub index: usize,
    pub off_nominal: bool,
    /// Closed ring of `[longitude, latitude]` in degrees (circles approximated).
    pub outline: Vec<[f64; 2]>,
    /// The circle's centre and radius when the footprint is a circle.
    pub circle: Option<MapCircle>,
    pub lower_m: Option<f64>,
    pub upper_m: Option<f64>,
    /// RFC 3339; absent when unbounded.
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct MapCircle {
    pub center: [f64; 2],
    pub radius_m: f64,
}

fn time_text(t: Option<geo4d::Timestamp>) -> Option<String> {
    let t = t?;
    chrono::DateTime::from_timestamp_micros(t.micros()).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl MapVolume {
    pub fn new(index: usize, off_nominal: bool, v: &geo4d::Volume4D) -> Self {
        let outline = v.footprint.display_outline(CIRCLE_POINTS).iter().map(|p| [p.lng(), p.lat()]).collect();
        let circle = match &v.footprint {
            geo4d::Footprint::Circle(c) => {
                Some(MapCircle { center: [c.center().lng(), c.center().lat()], radius_m: c.radius_m() })
            }
            geo4d::Footprint::Polygon(_) => None,
        };
        MapVolume {
            index,
            off_nominal,
            outline,
            circle,
            lower_m: v.altitude.lower_m(),
            upper_m: v.altitude.upper_m(),
            start: time_text(v.time.start()),
            end: time_text(v.time.end()),
        }
    }

    /// Nominal volumes then off-nominal ones, numbered in that order.
    pub fn list(nominal: &[geo4d::Volume4D], off_nominal: &[geo4d::Volume4D]) -> Vec<MapVolume> {
        nominal
            .iter()
            .map(|v| (false, v))
            .chain(off_nominal.iter().map(|v| (true, v)))
            .enumerate()
            .map(|(i, (off, v))| MapVolume::new(i, off, v))
            .collect()
    }
}

/// What kind of thing a shape on the map stands for.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// One of the viewer's own operations (a participant's map).
    OwnIntent,
    /// Another manager's operation: its details when obtained, else its DSS reference.
    OtherIntent,
    /// A restricted zone published by the viewer.
    OwnConstraint,
    /// A restricted zone published by someone else.
    Constraint,
    /// A subscription (the viewer's own, on a participant's map).
    Subscription,
    /// A network Remote ID identification service area (ASTM F3411): where a service provider
    /// has flights now; a layer of its own on the DSS's map.
    IdentificationServiceArea,
}

/// One operation, zone or subscription.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapEntity {
    pub kind: EntityKind,
    pub id: String,
    pub manager: String,
    /// `Accepted`, `Activated`, `Nonconforming`, `Contingent` for operations.
    pub state: Option<String>,
    pub priority: Option<i32>,
    pub version: Option<i32>,
    /// Only the viewer's own entities carry their OVN.
    pub ovn: Option<String>,
    pub uss_base_url: Option<String>,
    /// False when only the DSS reference is known (the DSS never holds details).
    pub details: bool,
    pub volumes: Vec<MapVolume>,
}

/// A live flight: its latest position and recent trail (ours as reported, others'
/// off-nominal ones as their managers serve their telemetry).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapFlight {
    /// The operational intent it flies.
    pub id: String,
    pub manager: String,
    /// Whether it is the viewer's.
    pub own: bool,
    /// The operation's state.
    pub state: Option<String>,
    /// `[lng, lat]` of the latest position, its altitude (m, WGS84) and time (RFC 3339).
    pub position: [f64; 2],
    pub alt_m: f64,
    pub time: String,
    /// Earlier positions, oldest first, `[lng, lat]` each (at most a few hundred).
    pub trail: Vec<[f64; 2]>,
}

/// Everything the page draws, as one document.
#[derive(Debug, Clone, Serialize)]
pub struct MapView {
    /// `participant` (may plan) or `dss` (read-only).
    pub mode: &'static str,
    /// Who is looking: the participant's client id, or the DSS caller's subject.
    pub viewer: String,
    pub generated_at: String,
    pub entities: Vec<MapEntity>,
    /// Set when the view is incomplete (for example, more entities than are drawn at once).
    pub truncated: bool,
    /// Live flights (a participant's map only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flights: Vec<MapFlight>,
}

impl MapView {
    pub fn new(mode: &'static str, viewer: String, entities: Vec<MapEntity>, truncated: bool) -> Self {
        let generated_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        MapView { mode, viewer, generated_at, entities, truncated, flights: vec![] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_a_strict_policy() {
        let app: Router = router(Arc::new(Basemap::offline()), "/");
        for (path, content_type) in [
            ("/", "text/html; charset=utf-8"),
            ("/map/assets/app.js", "text/javascript; charset=utf-8"),
            ("/map/assets/maplibre-gl-worker.mjs", "text/javascript; charset=utf-8"),
            ("/map/assets/basemap.json", "application/json"),
        ] {
            let r = app
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).expect("valid in the test"))
                .await
                .expect("valid in the test");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], content_type, "{path}");
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().expect("valid in the test");
            assert!(csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"), "{csp}");
        }
        let r = app
            .oneshot(Request::get("/map/assets/..%2Fsrc%2Flib.rs").body(Body::empty()).expect("valid in the test"))
            .await
            .expect("valid in the test");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_basemap_has_land_and_borders() {
        let (_, _, bytes) = ASSETS.iter().find(|(n, _, _)| *n == "basemap.json").expect("valid in the test");
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("valid in the test");
        assert!(v["land"]["features"].as_array().expect("valid in the test").len() == 1);
        assert!(
            v["borders"]["features"][0]["geometry"]["coordinates"].as_array().expect("valid in the test").len() > 100
        );
    }

    #[test]
    fn volumes_are_numbered_nominal_first_and_circles_keep_their_centre() {
        let centre = geo4d::LatLng::new(47.0, 8.0).expect("valid in the test");
        let v = geo4d::Volume4D {
            footprint: geo4d::Footprint::Circle(geo4d::Circle::new(centre, 300.0).expect("valid in the test")),
            altitude: geo4d::AltitudeBand::new(Some(0.0), Some(120.0)).expect("valid in the test"),
            time: geo4d::TimeWindow::new(
                Some(geo4d::Timestamp::from_micros(1_800_000_000_000_000)),
                Some(geo4d::Timestamp::from_micros(1_800_000_600_000_000)),
            )
            .expect("valid in the test"),
        };
        let list = MapVolume::list(std::slice::from_ref(&v), std::slice::from_ref(&v));
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].index, list[0].off_nominal, list[1].index, list[1].off_nominal), (0, false, 1, true));
        assert_eq!(list[0].circle, Some(MapCircle { center: [8.0, 47.0], radius_m: 300.0 }));
        assert_eq!(list[0].outline.len(), CIRCLE_POINTS + 1);
        assert_eq!(list[0].start.as_deref(), Some("2027-01-15T08:00:00.000Z"));
        assert_eq!((list[0].lower_m, list[0].upper_m), (Some(0.0), Some(120.0)));
    }
}
