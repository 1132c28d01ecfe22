//! What the map draws under the airspace. By default the embedded Natural Earth land and
//! borders (offline, no tile server). With `--map-tiles` either an XYZ URL template of raster or
//! vector tiles fetched by the browser, or a local PMTiles archive that the server itself serves
//! at `/map/tiles/{z}/{x}/{y}` (read with the `pmtiles` crate). The page learns which from
//! `/map/basemap` and names it in the map's corner, so nobody mistakes an empty plane for empty
//! airspace or a stale tile set for the current one.

use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pmtiles::{AsyncPmTilesReader, MmapBackend, TileCoord, TileType};
use serde::Serialize;

/// How the tiles of a `--map-tiles` source are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TileKind {
    /// Images (PNG, JPEG, WebP), drawn as they come.
    Raster,
    /// Mapbox vector tiles, drawn with a plain style that knows the OpenMapTiles and Protomaps
    /// layer names (water, land use, roads, buildings, boundaries); no text (no glyphs offline).
    Vector,
}

impl std::str::FromStr for TileKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raster" => Ok(TileKind::Raster),
            "vector" => Ok(TileKind::Vector),
            other => Err(format!("unknown tile kind `{other}`: `raster` or `vector`")),
        }
    }
}

/// The `--map-tiles*` flags, as given.
#[derive(Debug, Clone, Default)]
pub struct TileSource {
    /// An `http(s)://...{z}/{x}/{y}...` template, or the path of a `.pmtiles` file.
    pub spec: String,
    /// Raster or vector; guessed when absent (a template ending in `.pbf`/`.mvt` is vector, a
    /// PMTiles archive says what it holds).
    pub kind: Option<TileKind>,
    /// Shown in the map's corner; the template's host or the file's name when absent.
    pub label: Option<String>,
    /// The tiles' attribution (their licence usually requires one).
    pub attribution: Option<String>,
}

/// What the page is told about its basemap (`GET /map/basemap`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BasemapInfo {
    /// `natural_earth` (the embedded offline default), `raster` or `vector`.
    pub kind: &'static str,
    /// Shown in the map's corner.
    pub label: String,
    /// The tile URL template the browser fetches (a path on this server for PMTiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiles: Option<String>,
    pub min_zoom: u8,
    pub max_zoom: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<String>,
}

/// The basemap a server offers its map page, and the page's content security policy (which
/// must let the browser fetch a remote template's tiles and nothing else).
pub struct Basemap {
    pub(crate) info: BasemapInfo,
    pub(crate) csp: HeaderValue,
    archive: Option<Archive>,
}

struct Archive {
    reader: AsyncPmTilesReader<MmapBackend>,
    content_type: &'static str,
    encoding: Option<&'static str>,
}

/// The policy without any remote tile origin.
const CSP_HEAD: &str =
    "default-src 'none'; script-src 'self'; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'";
const CSP_TAIL: &str = "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn csp(extra_origin: Option<&str>) -> HeaderValue {
    let extra = extra_origin.map(|o| format!(" {o}")).unwrap_or_default();
    let policy = format!("{CSP_HEAD}; img-src 'self' data: blob:{extra}; connect-src 'self'{extra}; {CSP_TAIL}");
    // Origins are checked to be plain `scheme://host[:port]` before they get here.
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static(CSP_HEAD))
}

/// Deepest zoom a remote template is asked for (sources usually stop at 19-22; MapLibre scales
/// the deepest tiles beyond).
const REMOTE_MAX_ZOOM: u8 = 22;

impl Basemap {
    /// The embedded Natural Earth land and borders: no network, no file.
    pub fn offline() -> Self {
        Basemap {
            info: BasemapInfo {
                kind: "natural_earth",
                label: "Natural Earth 1:50m land and borders (offline; no streets)".into(),
                tiles: None,
                min_zoom: 0,
                max_zoom: 24,
                attribution: None,
            },
            csp: csp(None),
            archive: None,
        }
    }

    /// The basemap `--map-tiles` describes; a message naming the problem when it cannot be used
    /// (the server does not start with a basemap it cannot serve).
    pub async fn open(source: &TileSource) -> Result<Self, String> {
        let spec = source.spec.trim();
        if spec.starts_with("http://") || spec.starts_with("https://") {
            Self::remote(spec, source)
        } else {
            Self::archive(PathBuf::from(spec), source).await
        }
    }

    fn remote(template: &str, source: &TileSource) -> Result<Self, String> {
        for part in ["{z}", "{x}", "{y}"] {
            if !template.contains(part) {
                return Err(format!("--map-tiles {template}: a tile URL template needs {{z}}, {{x}} and {{y}}"));
            }
        }
        let (scheme, rest) = template.split_once("://").unwrap_or(("https", template));
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(format!("--map-tiles {template}: `{host}` is not a host name"));
        }
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        let guessed =
            if path.ends_with(".pbf") || path.ends_with(".mvt") { TileKind::Vector } else { TileKind::Raster };
        let kind = source.kind.unwrap_or(guessed);
        let origin = format!("{scheme}://{host}");
        Ok(Basemap {
            info: BasemapInfo {
                kind: kind_name(kind),
                label: source.label.clone().unwrap_or_else(|| format!("{} tiles from {host}", kind_name(kind))),
                tiles: Some(template.to_owned()),
                min_zoom: 0,
                max_zoom: REMOTE_MAX_ZOOM,
                attribution: source.attribution.clone(),
            },
            csp: csp(Some(&origin)),
            archive: None,
        })
    }

    async fn archive(path: PathBuf, source: &TileSource) -> Result<Self, String> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(format!(
                "--map-tiles {shown}: no such file (give a .pmtiles file, or an http(s) URL template with {{z}}/{{x}}/{{y}})"
            ));
        }
        let reader = AsyncPmTilesReader::new_with_path(&path)
            .await
            .map_err(|e| format!("--map-tiles {shown}: not a readable PMTiles archive: {e}"))?;
        let header = reader.get_header();
        let kind = match header.tile_type {
            TileType::Mvt => TileKind::Vector,
            TileType::Png | TileType::Jpeg | TileType::Webp => TileKind::Raster,
            other => {
                return Err(format!(
                    "--map-tiles {shown}: holds {other:?} tiles; the map draws PNG, JPEG, WebP or Mapbox vector tiles"
                ))
            }
        };
        if let Some(asked) = source.kind.filter(|k| *k != kind) {
            return Err(format!("--map-tiles {shown}: holds {} tiles, not {}", kind_name(kind), kind_name(asked)));
        }
        let (min_zoom, max_zoom) = (header.min_zoom, header.max_zoom.max(header.min_zoom));
        let content_type = header.tile_type.content_type();
        let encoding = header.tile_compression.content_encoding();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(shown);
        Ok(Basemap {
            info: BasemapInfo {
                kind: kind_name(kind),
                label: source.label.clone().unwrap_or_else(|| {
                    format!("{} tiles from {name} (PMTiles, zoom {min_zoom}-{max_zoom})", kind_name(kind))
                }),
                tiles: Some("/map/tiles/{z}/{x}/{y}".into()),
                min_zoom,
                max_zoom,
                attribution: source.attribution.clone(),
            },
            csp: csp(None),
            archive: Some(Archive { reader, content_type, encoding }),
        })
    }

    pub fn info(&self) -> &BasemapInfo {
        &self.info
    }
}

fn kind_name(kind: TileKind) -> &'static str {
    match kind {
        TileKind::Raster => "raster",
        TileKind::Vector => "vector",
    }
}

/// `GET /map/basemap`: what the page draws under the airspace. No token: it says nothing about
/// the airspace, and the page needs it before it signs in.
pub(crate) async fn info(State(basemap): State<std::sync::Arc<Basemap>>) -> Response {
    let mut r = Json(basemap.info.clone()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A 1x1 fully transparent PNG: what a raster archive "holds" where it has no tile.
const TRANSPARENT_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0b, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// `GET /map/tiles/{z}/{x}/{y}`: one tile of the local archive. A tile the archive lacks
/// (outside its area) is an empty one, drawn as nothing: a transparent image for raster
/// archives, an empty vector tile (no layers) for vector ones; MapLibre would report a 404 as
/// an error. 404 when no archive is served; 400 for coordinates outside the pyramid.
pub(crate) async fn tile(
    State(basemap): State<std::sync::Arc<Basemap>>,
    Path((z, x, y)): Path<(String, String, String)>,
) -> Response {
    let Some(archive) = &basemap.archive else {
        return (StatusCode::NOT_FOUND, "this server serves no tiles (no --map-tiles archive)").into_response();
    };
    let parsed =
        (z.parse::<u8>(), x.parse::<u32>(), y.trim_end_matches(".pbf").trim_end_matches(".png").parse::<u32>());
    let (Ok(z), Ok(x), Ok(y)) = parsed else {
        return (StatusCode::BAD_REQUEST, "tile coordinates are whole numbers: /map/tiles/{z}/{x}/{y}").into_response();
    };
    let Ok(coord) = TileCoord::new(z, x, y) else {
        return (StatusCode::BAD_REQUEST, "no such tile: x and y must be below 2^z, z at most 31").into_response();
    };
    match archive.reader.get_tile(coord).await {
        Ok(Some(bytes)) => {
            let mut r = bytes.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(archive.content_type));
            if let Some(enc) = archive.encoding {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            r
        }
        Ok(None) => {
            let (content_type, body): (&'static str, &'static [u8]) = if basemap.info.kind == "vector" {
                (archive.content_type, &[])
            } else {
                ("image/png", TRANSPARENT_PNG)
            };
            let mut r = body.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, z, x, y, "reading a basemap tile");
            (StatusCode::SERVICE_UNAVAILABLE, "the tile archive could not be read").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use std::sync::Arc;
    use tower::ServiceExt;

    use crate::testing::{write_raster_archive, PNG};

    async fn get(app: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let r = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("valid in the test"))
            .await
            .expect("valid in the test");
        let (parts, body) = r.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("valid in the test");
        (parts.status, parts.headers, bytes.to_vec())
    }

    #[tokio::test]
    async fn a_local_archive_is_served_tile_by_tile_and_named_in_the_info() {
        let dir = tempfile::tempdir().expect("valid in the test");
        let path = dir.path().join("city.pmtiles");
        write_raster_archive(&path);
        let source = TileSource { spec: path.display().to_string(), ..TileSource::default() };
        let basemap = Arc::new(Basemap::open(&source).await.expect("valid in the test"));
        assert_eq!((basemap.info.kind, basemap.info.min_zoom, basemap.info.max_zoom), ("raster", 0, 1));
        assert!(basemap.info.label.contains("city.pmtiles"), "{}", basemap.info.label);
        let app: Router = crate::router(basemap, "/");

        let (status, headers, body) = get(&app, "/map/tiles/1/1/0").await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, PNG));
        assert_eq!(headers[header::CONTENT_TYPE], "image/png");
        assert!(headers.get(header::CONTENT_ENCODING).is_none());
        let (status, headers, body) = get(&app, "/map/tiles/1/0/1").await;
        assert_eq!((status, body.as_slice()), (StatusCode::OK, TRANSPARENT_PNG), "a tile the archive lacks is empty");
        assert_eq!(headers[header::CONTENT_TYPE], "image/png");
        assert_eq!(get(&app, "/map/tiles/1/2/0").await.0, StatusCode::BAD_REQUEST, "outside the pyramid");
        assert_eq!(get(&app, "/map/tiles/a/0/0").await.0, StatusCode::BAD_REQUEST);

        let (status, _, body) = get(&app, "/map/basemap").await;
        let info: serde_json::Value = serde_json::from_slice(&body).expect("valid in the test");
        assert_eq!(status, StatusCode::OK);
        assert_eq!((info["kind"].as_str(), info["tiles"].as_str()), (Some("raster"), Some("/map/tiles/{z}/{x}/{y}")));
    }

    #[tokio::test]
    async fn a_remote_template_is_allowed_by_the_policy_and_bad_sources_are_refused_with_the_reason() {
        let source = TileSource {
            spec: "https://tiles.example.org/v1/{z}/{x}/{y}.pbf?key=abc".into(),
            attribution: Some("© Example".into()),
            ..TileSource::default()
        };
        let basemap = Arc::new(Basemap::open(&source).await.expect("valid in the test"));
        assert_eq!(basemap.info.kind, "vector", "a .pbf template is vector tiles");
        assert!(basemap.info.label.contains("tiles.example.org"), "{}", basemap.info.label);
        let app: Router = crate::router(basemap, "/map");
        for path in ["/map", "/map/assets/maplibre-gl-worker.mjs"] {
            let (_, headers, _) = get(&app, path).await;
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().expect("valid in the test");
            assert!(csp.contains("connect-src 'self' https://tiles.example.org;"), "{path}: {csp}");
            assert!(csp.contains("img-src 'self' data: blob: https://tiles.example.org;"), "{path}: {csp}");
        }
        assert_eq!(get(&app, "/map/tiles/0/0/0").await.0, StatusCode::NOT_FOUND, "no archive, no tiles");

        let png = TileSource { spec: "https://a.tile.example/{z}/{x}/{y}.png".into(), ..TileSource::default() };
        assert_eq!(Basemap::open(&png).await.expect("valid in the test").info.kind, "raster");
        let offline = crate::router::<()>(Arc::new(Basemap::offline()), "/");
        let (_, headers, _) = get(&offline, "/").await;
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().expect("valid in the test");
        assert!(csp.contains("connect-src 'self';"), "{csp}");

        let dir = tempfile::tempdir().expect("valid in the test");
        let junk = dir.path().join("junk.pmtiles");
        std::fs::write(&junk, b"not an archive").expect("valid in the test");
        let raster = dir.path().join("raster.pmtiles");
        write_raster_archive(&raster);
        for (spec, kind, expected) in [
            ("https://tiles.example.org/{z}/{x}.png", None, "needs {z}, {x} and {y}"),
            ("https://bad host/{z}/{x}/{y}.png", None, "not a host name"),
            ("/nonexistent/city.pmtiles", None, "no such file"),
            (junk.to_str().expect("valid in the test"), None, "not a readable PMTiles archive"),
            (raster.to_str().expect("valid in the test"), Some(TileKind::Vector), "holds raster tiles, not vector"),
        ] {
            let source = TileSource { spec: spec.into(), kind, ..TileSource::default() };
            let err = Basemap::open(&source).await.err().expect("refused");
            assert!(err.contains(expected), "{spec}: {err}");
        }
    }
}
