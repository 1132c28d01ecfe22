//! Footprints on the WGS84 ellipsoid: points, polygons with geodesic edges, geodesic circles.

use std::sync::{LazyLock, OnceLock};

use geographiclib_rs::{capability as caps, DirectGeodesic, Geodesic, InverseGeodesic};

use crate::limits::{MAX_AREA_KM2, MAX_POLYGON_VERTICES, MAX_RADIUS_M};
use crate::planar::{self, P};
use crate::GeoError;

/// The WGS84 ellipsoid, the only earth model of the standard.
pub(crate) static WGS84: LazyLock<Geodesic> = LazyLock::new(Geodesic::wgs84);

/// Metres per degree of latitude, a lower bound over the ellipsoid (used for margins only).
const MIN_M_PER_DEG_LAT: f64 = 110_574.0;
/// Extra margin on every bounding box, in degrees (about 1 cm).
const BOX_MARGIN_DEG: f64 = 1.0e-7;

/// A validated WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    lat: f64,
    lng: f64,
}

impl LatLng {
    pub(crate) const ORIGIN: LatLng = LatLng { lat: 0.0, lng: 0.0 };

    pub fn new(lat: f64, lng: f64) -> Result<Self, GeoError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::LatitudeOutOfRange(lat));
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(GeoError::LongitudeOutOfRange(lng));
        }
        Ok(Self { lat, lng })
    }
    pub fn lat(&self) -> f64 {
        self.lat
    }
    pub fn lng(&self) -> f64 {
        self.lng
    }
}

/// Geodesic distance in metres on the WGS84 ellipsoid.
pub fn geodesic_distance_m(a: LatLng, b: LatLng) -> f64 {
    InverseGeodesic::<f64>::inverse(&*WGS84, a.lat, a.lng, b.lat, b.lng)
}

/// Ellipsoidal gnomonic projection of `p` about `center`, in metres; `None` when `p` is too far
/// from `center` to be projected (the geodesic scale is not positive).
pub(crate) fn gnomonic(center: LatLng, p: LatLng) -> Option<P> {
    // Only what the projection needs (GeographicLib's Gnomonic::Forward): the azimuth at the
    // centre, as the unit vector (sin, cos) the solver works with (no round trip through
    // degrees), the reduced length m12 and the geodesic scale M12.
    #[allow(non_snake_case)]
    let (_a12, _s12, salp1, calp1, _salp2, _calp2, m12, M12, _M21, _S12) = WGS84._gen_inverse(
        center.lat,
        center.lng,
        p.lat,
        p.lng,
        caps::AZIMUTH | caps::REDUCEDLENGTH | caps::GEODESICSCALE,
    );
    // Beyond the projection's horizon (M12 -> 0), or not a number: no planar image.
    if M12.is_nan() || M12 <= 1.0e-3 {
        return None;
    }
    let rho = m12 / M12;
    Some((rho * salp1, rho * calp1))
}

pub(crate) fn project_all(center: LatLng, points: &[LatLng]) -> Option<Vec<P>> {
    points.iter().map(|p| gnomonic(center, *p)).collect()
}

/// The point `distance_m` from `from` along the geodesic leaving it at `azimuth_deg` (degrees
/// east of true north), on the WGS84 ellipsoid.
pub fn destination(from: LatLng, azimuth_deg: f64, distance_m: f64) -> LatLng {
    let (lat, lng): (f64, f64) = WGS84.direct(from.lat, from.lng, azimuth_deg, distance_m);
    LatLng { lat: lat.clamp(-90.0, 90.0), lng: wrap180(lng) }
}

/// Latitude/longitude bounds in degrees; they contain the whole shape, edges included.
///
/// The longitude interval `[min_lng, max_lng]` is continuous and at most 360° wide; it extends
/// past ±180 when the shape crosses the antimeridian (a box from 179.9 to 180.2 covers 179.9 to
/// 180 and -180 to -179.8), and is exactly `[-180, 180]` for a polar cap, which covers every
/// longitude. [`GeoBox::parts`] gives the same area as boxes within [-180, 180] for indexes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoBox {
    pub min_lat: f64,
    pub max_lat: f64,
    pub min_lng: f64,
    pub max_lng: f64,
}

/// `x` in degrees, wrapped into [-180, 180).
pub(crate) fn wrap180(x: f64) -> f64 {
    let w = (x + 180.0).rem_euclid(360.0) - 180.0;
    if w.is_finite() {
        w
    } else {
        0.0
    }
}

impl GeoBox {
    /// Does this box cover every longitude (a polar cap, or a box at least 360° wide)?
    pub fn all_longitudes(&self) -> bool {
        self.max_lng - self.min_lng >= 360.0
    }

    /// Wrap-aware: boxes on either side of the antimeridian meet when their longitudes do
    /// modulo 360°.
    pub fn intersects(&self, other: &GeoBox) -> bool {
        if !(self.min_lat <= other.max_lat && other.min_lat <= self.max_lat) {
            return false;
        }
        if self.all_longitudes() || other.all_longitudes() {
            return true;
        }
        [-360.0, 0.0, 360.0]
            .iter()
            .any(|shift| self.min_lng <= other.max_lng + shift && other.min_lng + shift <= self.max_lng)
    }

    /// Wrap-aware: is the point inside (edges included)?
    pub fn contains(&self, p: LatLng) -> bool {
        if !(p.lat >= self.min_lat && p.lat <= self.max_lat) {
            return false;
        }
        // A point at a pole has every longitude.
        if self.all_longitudes() || p.lat.abs() == 90.0 {
            return true;
        }
        [-360.0, 0.0, 360.0].iter().any(|shift| p.lng + shift >= self.min_lng && p.lng + shift <= self.max_lng)
    }

    /// The same area as at most two boxes with longitudes within [-180, 180].
    pub fn parts(&self) -> impl Iterator<Item = GeoBox> {
        let lat =
            |min_lng: f64, max_lng: f64| GeoBox { min_lat: self.min_lat, max_lat: self.max_lat, min_lng, max_lng };
        let (first, second) = if self.all_longitudes() {
            (lat(-180.0, 180.0), None)
        } else if self.max_lng > 180.0 {
            (lat(self.min_lng.max(-180.0), 180.0), Some(lat(-180.0, self.max_lng - 360.0)))
        } else if self.min_lng < -180.0 {
            (lat(self.min_lng + 360.0, 180.0), Some(lat(-180.0, self.max_lng.min(180.0))))
        } else {
            (*self, None)
        };
        std::iter::once(first).chain(second)
    }

    /// The smallest box containing both, wrap-aware (the other box is taken on the side of
    /// the antimeridian nearer to this one).
    pub(crate) fn union(&self, other: &GeoBox) -> GeoBox {
        let mid = |b: &GeoBox| (b.min_lng + b.max_lng) / 2.0;
        let shift = [-360.0, 0.0, 360.0]
            .into_iter()
            .min_by(|a, b| (mid(other) + a - mid(self)).abs().total_cmp(&(mid(other) + b - mid(self)).abs()))
            .unwrap_or(0.0);
        let mut u = GeoBox {
            min_lat: self.min_lat.min(other.min_lat),
            max_lat: self.max_lat.max(other.max_lat),
            min_lng: self.min_lng.min(other.min_lng + shift),
            max_lng: self.max_lng.max(other.max_lng + shift),
        };
        if self.all_longitudes() || other.all_longitudes() || u.max_lng - u.min_lng >= 360.0 {
            (u.min_lng, u.max_lng) = (-180.0, 180.0);
        }
        u
    }

    /// The centre of the box (longitude wrapped into [-180, 180)).
    pub(crate) fn center(&self) -> LatLng {
        LatLng { lat: (self.min_lat + self.max_lat) / 2.0, lng: wrap180((self.min_lng + self.max_lng) / 2.0) }
    }

    /// Moves a box lying wholly beyond ±180 back into range; a box crossing it stays as is.
    fn normalized(mut self) -> GeoBox {
        if self.all_longitudes() {
            (self.min_lng, self.max_lng) = (-180.0, 180.0);
        } else if self.min_lng > 180.0 {
            self.min_lng -= 360.0;
            self.max_lng -= 360.0;
        } else if self.max_lng < -180.0 {
            self.min_lng += 360.0;
            self.max_lng += 360.0;
        }
        self
    }

    /// The box widened by `metres` on every side (a cap once it comes close to a pole).
    pub fn padded(&self, metres: f64) -> GeoBox {
        if metres <= 0.0 {
            return *self;
        }
        let dlat = metres / MIN_M_PER_DEG_LAT;
        let mut b = GeoBox {
            min_lat: (self.min_lat - dlat).max(-90.0),
            max_lat: (self.max_lat + dlat).min(90.0),
            min_lng: self.min_lng,
            max_lng: self.max_lng,
        };
        let widest = b.min_lat.abs().max(b.max_lat.abs());
        let cos = widest.to_radians().cos();
        let dlng = if cos > 1e-6 { dlat / cos } else { 360.0 };
        if b.all_longitudes() || self.max_lng - self.min_lng + 2.0 * dlng >= 360.0 {
            (b.min_lng, b.max_lng) = (-180.0, 180.0);
        } else {
            (b.min_lng, b.max_lng) = (self.min_lng - dlng, self.max_lng + dlng);
        }
        b.capped().normalized()
    }

    /// The box widened to the pole (every longitude) it comes close to.
    fn capped(mut self) -> GeoBox {
        if self.max_lat >= POLAR_CAP_LAT {
            self.max_lat = 90.0;
            (self.min_lng, self.max_lng) = (-180.0, 180.0);
        }
        if self.min_lat <= -POLAR_CAP_LAT {
            self.min_lat = -90.0;
            (self.min_lng, self.max_lng) = (-180.0, 180.0);
        }
        self
    }
}

/// Boxes reaching beyond this latitude become polar caps: every longitude up to the pole.
/// Near a pole longitudes converge, so a shape's longitude range says little; a cap always
/// contains the shape, and the exact test decides (high latitudes carry little traffic).
pub(crate) const POLAR_CAP_LAT: f64 = 80.0;

/// The mean of `points` as unit vectors, back on the sphere: a centre that is right across the
/// antimeridian and at the poles, where averaging degrees is not.
pub(crate) fn mean_point(points: &[LatLng]) -> LatLng {
    let (mut x, mut y, mut z) = (0.0, 0.0, 0.0);
    for p in points {
        let (lat, lng) = (p.lat.to_radians(), p.lng.to_radians());
        x += lat.cos() * lng.cos();
        y += lat.cos() * lng.sin();
        z += lat.sin();
    }
    let h = (x * x + y * y).sqrt();
    if h < 1e-15 {
        // At a pole (or degenerate): the longitude is arbitrary.
        return LatLng { lat: if z >= 0.0 { 90.0 } else { -90.0 }, lng: 0.0 };
    }
    LatLng { lat: z.atan2(h).to_degrees().clamp(-90.0, 90.0), lng: wrap180(y.atan2(x).to_degrees()) }
}

/// A simple polygon whose edges are geodesics. Valid by construction.
#[derive(Debug, Clone)]
pub struct Polygon {
    vertices: Vec<LatLng>,
    bbox: GeoBox,
    area_m2: f64,
    /// The vertices' mean point: the projection centre for pairwise tests.
    center: LatLng,
    /// The vertices projected about the centre of the polygon's tile, computed on first use and
    /// kept: two polygons of one tile are then compared with no geodesic work at all.
    tile: OnceLock<Option<TileProjection>>,
}

impl PartialEq for Polygon {
    fn eq(&self, other: &Self) -> bool {
        self.vertices == other.vertices
    }
}

/// Side of a projection tile in degrees. Small enough that every vertex of a polygon assigned to
/// a tile lies well within `SHARED_PROJECTION_RADIUS_M` of its centre, or the polygon gets no
/// tile projection and is compared pairwise.
const TILE_DEG: f64 = 0.5;

#[derive(Debug, Clone)]
struct TileProjection {
    key: (i32, i32),
    points: Vec<P>,
    /// The convex hull of `points`, made on first use by a relevance test.
    hull: OnceLock<Vec<P>>,
}

impl TileProjection {
    fn new(key: (i32, i32), points: Vec<P>) -> Self {
        Self { key, points, hull: OnceLock::new() }
    }
    fn hull(&self) -> &[P] {
        self.hull.get_or_init(|| convex_hull(self.points.clone()))
    }
}

/// The tile of a shape with bounding box `bbox`, and the tile's centre, when the whole box is
/// close enough to that centre for projected distances and edges to stay within the bounds of
/// [`PLANE_DISTANCE_TOLERANCE`] and [`EDGE_STRAIGHTNESS_M`].
fn tile_of(bbox: &GeoBox) -> Option<((i32, i32), LatLng)> {
    let c = bbox.center();
    // The straightness bound is tested up to 70° of latitude; beyond, compare pairwise.
    if c.lat.abs() > 70.0 {
        return None;
    }
    let key = ((c.lat / TILE_DEG).floor() as i32, (c.lng / TILE_DEG).floor() as i32);
    let center = tile_center(key)?;
    within_radius(center, bbox, crate::prepared::SHARED_PROJECTION_RADIUS_M).then_some((key, center))
}

fn tile_center(key: (i32, i32)) -> Option<LatLng> {
    // Tiles are only defined within [-180, 180]; a shape across the antimeridian has none and
    // is compared pairwise.
    LatLng::new((key.0 as f64 + 0.5) * TILE_DEG, (key.1 as f64 + 0.5) * TILE_DEG).ok()
}

fn tile_projection(vertices: &[LatLng], bbox: &GeoBox) -> Option<TileProjection> {
    let (key, center) = tile_of(bbox)?;
    project_all(center, vertices).map(|points| TileProjection::new(key, points))
}

/// Relative bound on how much the gnomonic projection about a centre changes the distance
/// between two points that lie (with the geodesic between them) within
/// `SHARED_PROJECTION_RADIUS_M` of it: planar distance / geodesic distance stays within
/// [1/(1+t), 1+t]. The scale of the projection at 60 km is below 1 + 1e-4 (tested by
/// `plane_distances_stay_within_tolerance`); 1e-3 leaves a tenfold margin.
pub(crate) const PLANE_DISTANCE_TOLERANCE: f64 = 1.0e-3;
/// Bound on how far a projected geodesic edge strays from its straight chord, in metres, for
/// shapes within `SHARED_PROJECTION_RADIUS_M` of the centre (measured below 5 mm by
/// `shared_projection_centre_keeps_edges_straight`).
pub(crate) const EDGE_STRAIGHTNESS_M: f64 = 0.01;

/// Circle (projected centre `c`, geodesic radius `r`) against a polygon projected about the
/// same centre. Answers only when the planar distance decides it beyond every projection
/// error bound; `None` in the thin band where it cannot (the caller then tests exactly).
pub(crate) fn circle_polygon_in_plane(c: P, r: f64, poly: &[P]) -> Option<bool> {
    let n = poly.len();
    let d = if planar::point_in_polygon(c, poly) {
        0.0
    } else {
        (0..n).map(|i| planar::point_segment_distance(c, poly[i], poly[(i + 1) % n]).0).fold(f64::INFINITY, f64::min)
    };
    // The true distance from the centre to the polygon lies within
    // [(d - e) / (1 + t), (d + e) * (1 + t)].
    let (t, e) = (PLANE_DISTANCE_TOLERANCE, EDGE_STRAIGHTNESS_M);
    if (d + e) * (1.0 + t) <= r {
        Some(true)
    } else if (d - e) / (1.0 + t) > r {
        Some(false)
    } else {
        None
    }
}

/// Two circles with centres projected about one centre; `None` when too close to call.
pub(crate) fn circles_in_plane(a: P, ra: f64, b: P, rb: f64) -> Option<bool> {
    let d = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
    let t = PLANE_DISTANCE_TOLERANCE;
    if d * (1.0 + t) <= ra + rb {
        Some(true)
    } else if d / (1.0 + t) > ra + rb {
        Some(false)
    } else {
        None
    }
}

/// Is every point of `b` surely within `radius_m` of `center`? Degree lengths are bounded above
/// (111.7 km per degree of latitude; 111.4 km times the largest cosine in the box per degree of
/// longitude) and the bound is widened by 5% for the curvature the flat estimate ignores.
pub(crate) fn within_radius(center: LatLng, b: &GeoBox, radius_m: f64) -> bool {
    let dlat = (b.min_lat - center.lat).abs().max((b.max_lat - center.lat).abs());
    let dlng = (b.min_lng - center.lng).abs().max((b.max_lng - center.lng).abs());
    if dlng >= 1.0 || dlat >= 1.0 {
        return false;
    }
    let lat_nearest_equator = if b.min_lat <= 0.0 && b.max_lat >= 0.0 {
        0.0
    } else {
        b.min_lat.abs().min(b.max_lat.abs()).min(center.lat.abs())
    };
    let cos = lat_nearest_equator.to_radians().cos();
    let (y, x) = (dlat * 111_700.0, dlng * 111_400.0 * cos);
    1.05 * (x * x + y * y).sqrt() < radius_m
}

impl Polygon {
    /// Validates vertex count, duplicates, crossing edges, zero area and the area limit.
    pub fn new(vertices: Vec<LatLng>) -> Result<Self, GeoError> {
        let n = vertices.len();
        if n < 3 {
            return Err(GeoError::TooFewVertices(n));
        }
        if n > MAX_POLYGON_VERTICES {
            return Err(GeoError::TooManyVertices { got: n, max: MAX_POLYGON_VERTICES });
        }
        if let Some((i, j)) = first_duplicate(&vertices) {
            return Err(GeoError::DuplicateVertex(i, j));
        }
        let mean = mean_point(&vertices);
        // Around a pole the vertices span every longitude; the box is made a polar cap below.
        let corner_box = vertex_box(&vertices, mean);
        // One projection serves validation and, when the polygon fits its tile, is kept as the
        // tile projection: any gnomonic plane keeps edges straight, so crossings are found
        // the same in either, and the area (checked against a limit only) moves by < 1e-3.
        // Without a tile (across the antimeridian, at high latitude) the vertices' mean point
        // is the centre: right everywhere, poles included.
        let tile = tile_of(&corner_box);
        let center = tile.map_or(mean, |(_, c)| c);
        let projected = project_all(center, &vertices).ok_or(GeoError::TooWide)?;
        let area_m2 = planar::signed_area(&projected).abs();
        if area_m2 / 1.0e6 > MAX_AREA_KM2 {
            return Err(GeoError::AreaTooLarge { area_km2: area_m2 / 1.0e6, max_km2: MAX_AREA_KM2 });
        }
        match planar::first_crossing(&projected) {
            Some(planar::SelfContact::Cross(i, j)) => return Err(GeoError::CrossingEdges(i, j)),
            Some(planar::SelfContact::Touch(i, j)) => return Err(GeoError::TouchingEdges(i, j)),
            None => {}
        }
        // Below a square centimetre the outline is a line, not an area.
        if area_m2 < 1.0e-4 {
            return Err(GeoError::Degenerate);
        }
        let mut bbox = polygon_box(&vertices, &projected, mean, corner_box);
        // A polygon around a pole covers every longitude up to it.
        for pole in [90.0, -90.0] {
            let inside = gnomonic(center, LatLng { lat: pole, lng: 0.0 })
                .is_some_and(|p| planar::point_in_polygon(p, &projected));
            if inside && pole > 0.0 {
                (bbox.max_lat, bbox.min_lng, bbox.max_lng) = (90.0, -180.0, 180.0);
            } else if inside {
                (bbox.min_lat, bbox.min_lng, bbox.max_lng) = (-90.0, -180.0, 180.0);
            }
        }
        let bbox = bbox.normalized();
        let cached = OnceLock::new();
        // Kept only if the padded box still belongs to the same tile, as `tile()` would decide.
        if let (Some((key, _)), Some((padded_key, _))) = (tile, tile_of(&bbox)) {
            if key == padded_key {
                let _ = cached.set(Some(TileProjection::new(key, projected)));
            }
        }
        Ok(Self { vertices, bbox, area_m2, center: mean, tile: cached })
    }
    /// Rebuilds a polygon that `Polygon::new` accepted earlier, from its vertices and the
    /// bounding box and area it computed then, without repeating the geodesic work. For data
    /// this system wrote itself under a checksum (the store's log); anything else must go
    /// through `new`. Still refuses values that cannot come from `new`.
    pub fn restore(vertices: Vec<LatLng>, bbox: GeoBox, area_m2: f64) -> Result<Self, GeoError> {
        let n = vertices.len();
        if n < 3 {
            return Err(GeoError::TooFewVertices(n));
        }
        if n > MAX_POLYGON_VERTICES {
            return Err(GeoError::TooManyVertices { got: n, max: MAX_POLYGON_VERTICES });
        }
        if !(vertices.iter().all(|v| bbox.contains(*v)) && area_m2.is_finite() && area_m2 > 0.0) {
            return Err(GeoError::Degenerate);
        }
        let center = mean_point(&vertices);
        Ok(Self { vertices, bbox, area_m2, center, tile: OnceLock::new() })
    }
    pub fn bbox(&self) -> GeoBox {
        self.bbox
    }

    fn tile(&self) -> Option<&TileProjection> {
        self.tile.get_or_init(|| tile_projection(&self.vertices, &self.bbox)).as_ref()
    }
    /// The polygon's tile, the tile's centre and the vertices projected about it, if it has one.
    pub(crate) fn tile_plane(&self) -> Option<((i32, i32), LatLng, &[P])> {
        let t = self.tile()?;
        Some((t.key, tile_center(t.key)?, &t.points))
    }

    /// The exact test through cached tile projections, when both polygons have one in the same
    /// tile; `None` when they do not.
    pub(crate) fn same_tile_test(&self, other: &Polygon) -> Option<bool> {
        let (a, b) = (self.tile()?, other.tile()?);
        (a.key == b.key).then(|| planar::polygons_intersect(&a.points, &b.points))
    }
    pub fn vertices(&self) -> &[LatLng] {
        &self.vertices
    }
    pub fn area_m2(&self) -> f64 {
        self.area_m2
    }
}

/// The same point written twice: equal coordinates, or any two longitudes at one pole, or
/// longitudes -180 and 180 (one meridian).
fn first_duplicate(vertices: &[LatLng]) -> Option<(usize, usize)> {
    let key = |v: &LatLng| {
        let lng = if v.lat.abs() == 90.0 { 0.0 } else { wrap180(v.lng) };
        ((v.lat + 0.0).to_bits(), (lng + 0.0).to_bits())
    };
    let mut keyed: Vec<(u64, u64, usize)> = vertices.iter().enumerate().map(|(i, v)| (key(v).0, key(v).1, i)).collect();
    keyed.sort_unstable();
    keyed.windows(2).find(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1).map(|w| (w[0].2.min(w[1].2), w[0].2.max(w[1].2)))
}

/// The vertices' box, with longitudes taken continuously around `mean`'s (so a polygon across
/// the antimeridian gets one box extending past ±180, not one spanning the globe). A vertex at
/// a pole has no longitude of its own and only bounds the latitude.
fn vertex_box(vertices: &[LatLng], mean: LatLng) -> GeoBox {
    let mut b = GeoBox { min_lat: 90.0, max_lat: -90.0, min_lng: f64::INFINITY, max_lng: f64::NEG_INFINITY };
    for v in vertices {
        b.min_lat = b.min_lat.min(v.lat);
        b.max_lat = b.max_lat.max(v.lat);
        if v.lat.abs() < 90.0 {
            let lng = mean.lng + wrap180(v.lng - mean.lng);
            b.min_lng = b.min_lng.min(lng);
            b.max_lng = b.max_lng.max(lng);
        }
    }
    if !b.min_lng.is_finite() {
        (b.min_lng, b.max_lng) = (-180.0, 180.0);
    }
    b
}

/// WGS84's flattening (GeographicLib's value).
const WGS84_FLATTENING: f64 = 1.0 / 298.257_223_563;

/// Edges shorter than this (in the gnomonic plane) get the cheap bulge bound in `polygon_box`.
const SHORT_EDGE_M: f64 = 50_000.0;
/// Mean earth radius, for the short-edge bulge bound only.
const SHORT_EDGE_EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Latitudes closer to a pole than this have no useful longitude: a box reaching them covers
/// every longitude.
const NEAR_POLE_LAT: f64 = 89.9;

/// The exact box of a polygon with geodesic edges, in time linear in its vertex count and
/// independent of its size, thinness or latitude (a sliver from 10° to 70° along one meridian
/// gets a box as thin as itself, not a cap):
///
/// - longitude: along a geodesic it changes monotonically (Clairaut: `cos β · sin α` is constant,
///   so `sin α` keeps its sign), so each edge stays between its end points' longitudes, which
///   `vertex_box` takes continuously around the polygon's mean; an edge that would run the
///   other way round (its azimuth disagrees with that direction) makes the box cover every
///   longitude;
/// - latitude: an edge reaches beyond its end points only through the geodesic's vertex, where
///   it heads due east or west; that happens inside the edge exactly when it leaves one end
///   poleward and arrives at the other heading back. The vertex's reduced latitude follows from
///   Clairaut's relation, `cos β_max = |cos β₁ · sin α₁|`, exact on the ellipsoid.
///
/// A polygon with a vertex at or near a pole, or with an edge over one, covers every longitude
/// up to it (the pole-inside case is added by the caller).
fn polygon_box(vertices: &[LatLng], projected: &[P], mean: LatLng, mut b: GeoBox) -> GeoBox {
    let n = vertices.len();
    let one_minus_f = 1.0 - WGS84_FLATTENING;
    let continuous = |v: LatLng| mean.lng + wrap180(v.lng - mean.lng);
    let mut all_longitudes = false;
    let mut short_bulge_deg: f64 = 0.0;
    for i in 0..n {
        let (p, q) = (vertices[i], vertices[(i + 1) % n]);
        // A short edge (most of them) is bounded cheaply: it bows poleward by at most
        // (L/R)²/8 · tan|φ| radians, doubled for safety, where its chord in the plane bounds L
        // (the projection only stretches; 1% covers the ellipsoid), and it stays between its
        // ends' longitudes unless it runs near a pole. Only long edges, or edges near a pole,
        // pay for the geodesic solution below.
        let (pp, pq) = (projected[i], projected[(i + 1) % n]);
        let length_m = 1.01 * ((pp.0 - pq.0).powi(2) + (pp.1 - pq.1).powi(2)).sqrt();
        let lat = p.lat.abs().max(q.lat.abs());
        if length_m < SHORT_EDGE_M && lat < 85.0 {
            let bulge_rad = (length_m / SHORT_EDGE_EARTH_RADIUS_M).powi(2) / 8.0 * lat.to_radians().tan() * 2.0;
            short_bulge_deg = short_bulge_deg.max(bulge_rad.to_degrees());
            continue;
        }
        let (_s12, azi1, azi2, _a12): (f64, f64, f64, f64) = WGS84.inverse(p.lat, p.lng, q.lat, q.lng);
        let (a1, a2) = (azi1.to_radians(), azi2.to_radians());
        let (north, south) = (a1.cos() > 0.0 && a2.cos() < 0.0, a1.cos() < 0.0 && a2.cos() > 0.0);
        if north || south {
            let beta1 = (one_minus_f * p.lat.to_radians().tan()).atan();
            let clairaut = (beta1.cos() * a1.sin()).abs().min(1.0);
            let beta_max = clairaut.acos();
            let phi_max = (beta_max.tan() / one_minus_f).atan().to_degrees();
            if north {
                b.max_lat = b.max_lat.max(phi_max);
            } else {
                b.min_lat = b.min_lat.min(-phi_max);
            }
        }
        if p.lat.abs() < 90.0 && q.lat.abs() < 90.0 {
            let east = continuous(q) - continuous(p);
            if east != 0.0 && (east > 0.0) != (a1.sin() > 0.0) {
                all_longitudes = true;
            }
        }
    }
    // Rounding in the geodesic solution is far below a micro-degree.
    let margin = BOX_MARGIN_DEG + short_bulge_deg + 1.0e-9 * (b.max_lat - b.min_lat);
    b.min_lat = (b.min_lat - margin).max(-90.0);
    b.max_lat = (b.max_lat + margin).min(90.0);
    b.min_lng -= BOX_MARGIN_DEG;
    b.max_lng += BOX_MARGIN_DEG;
    if all_longitudes {
        (b.min_lng, b.max_lng) = (-180.0, 180.0);
    }
    if b.max_lat >= NEAR_POLE_LAT {
        b.max_lat = 90.0;
        (b.min_lng, b.max_lng) = (-180.0, 180.0);
    }
    if b.min_lat <= -NEAR_POLE_LAT {
        b.min_lat = -90.0;
        (b.min_lng, b.max_lng) = (-180.0, 180.0);
    }
    b
}

/// All points within a geodesic distance of a centre. Valid by construction.
#[derive(Debug, Clone)]
pub struct Circle {
    center: LatLng,
    radius_m: f64,
    bbox: GeoBox,
    /// The centre projected about its tile's centre, computed on first use and kept.
    tile: OnceLock<Option<((i32, i32), P)>>,
}

impl PartialEq for Circle {
    fn eq(&self, other: &Self) -> bool {
        self.center == other.center && self.radius_m == other.radius_m
    }
}

impl Circle {
    pub fn new(center: LatLng, radius_m: f64) -> Result<Self, GeoError> {
        if !radius_m.is_finite() || radius_m <= 0.0 {
            return Err(GeoError::InvalidRadius(radius_m));
        }
        if radius_m > MAX_RADIUS_M {
            let area_km2 = std::f64::consts::PI * radius_m * radius_m / 1.0e6;
            return Err(GeoError::AreaTooLarge { area_km2, max_km2: MAX_AREA_KM2 });
        }
        let reach_deg = radius_m / MIN_M_PER_DEG_LAT;
        let bbox = if center.lat.abs() + reach_deg >= POLAR_CAP_LAT {
            // Near a pole (or around it): a cap from the circle's far latitude to the pole.
            if center.lat > 0.0 {
                GeoBox { min_lat: (center.lat - reach_deg).max(-90.0), max_lat: 90.0, min_lng: -180.0, max_lng: 180.0 }
            } else {
                GeoBox { min_lat: -90.0, max_lat: (center.lat + reach_deg).min(90.0), min_lng: -180.0, max_lng: 180.0 }
            }
        } else {
            let (north, _): (f64, f64) = WGS84.direct(center.lat, center.lng, 0.0, radius_m);
            let (south, _): (f64, f64) = WGS84.direct(center.lat, center.lng, 180.0, radius_m);
            // The widest longitude of a small geodesic circle is reached close to azimuth 90°;
            // a 1% margin covers the difference (below the polar caps' latitude).
            let (_, east): (f64, f64) = WGS84.direct(center.lat, center.lng, 90.0, radius_m);
            let dlng = wrap180(east - center.lng).abs() * 1.01;
            let dlat_margin = (north - south).abs() * 0.005;
            GeoBox {
                min_lat: south - dlat_margin - BOX_MARGIN_DEG,
                max_lat: north + dlat_margin + BOX_MARGIN_DEG,
                min_lng: center.lng - dlng - BOX_MARGIN_DEG,
                max_lng: center.lng + dlng + BOX_MARGIN_DEG,
            }
            .normalized()
        };
        Ok(Self { center, radius_m, bbox, tile: OnceLock::new() })
    }
    pub fn center(&self) -> LatLng {
        self.center
    }
    pub fn radius_m(&self) -> f64 {
        self.radius_m
    }
    pub fn bbox(&self) -> GeoBox {
        self.bbox
    }
    fn tile(&self) -> Option<((i32, i32), P)> {
        *self.tile.get_or_init(|| {
            let (key, center) = tile_of(&self.bbox)?;
            gnomonic(center, self.center).map(|p| (key, p))
        })
    }
    /// Radius in the gnomonic plane centred on this circle of the point at geodesic distance
    /// `radius_m` in the direction of `toward` (metres in that plane).
    fn projected_radius_toward(&self, toward: P) -> f64 {
        let azimuth_deg = toward.0.atan2(toward.1).to_degrees();
        let (lat, lng): (f64, f64) = WGS84.direct(self.center.lat, self.center.lng, azimuth_deg, self.radius_m);
        match gnomonic(self.center, LatLng { lat, lng }) {
            Some((x, y)) => (x * x + y * y).sqrt(),
            None => f64::INFINITY,
        }
    }
}

/// The outline of a volume: exactly one polygon or circle.
#[derive(Debug, Clone, PartialEq)]
pub enum Footprint {
    Polygon(Polygon),
    Circle(Circle),
}

impl Footprint {
    /// The outline as a closed ring of points for display (a map): a polygon's vertices, or a
    /// circle approximated by `circle_points` points at its radius on the WGS84 ellipsoid. Never
    /// used to decide anything; intersections use the exact shape.
    pub fn display_outline(&self, circle_points: usize) -> Vec<LatLng> {
        let mut ring = match self {
            Footprint::Polygon(p) => p.vertices().to_vec(),
            Footprint::Circle(c) => {
                let n = circle_points.max(8);
                (0..n)
                    .map(|i| {
                        let azimuth = 360.0 * i as f64 / n as f64;
                        let (lat, lng): (f64, f64) = WGS84.direct(c.center.lat, c.center.lng, azimuth, c.radius_m);
                        LatLng { lat, lng: wrap180(lng) }
                    })
                    .collect()
            }
        };
        if let Some(first) = ring.first().copied() {
            ring.push(first);
        }
        ring
    }

    /// Reads the first coordinate of the shape's cached tile-plane image (0 if it has none).
    /// Worth nothing in itself: a search calls it on all its candidates before testing any, so
    /// that their cache misses (row, volumes, projected points) overlap instead of queueing one
    /// candidate after another.
    pub fn touch_plane(&self) -> f64 {
        match self {
            Footprint::Polygon(p) => {
                p.tile.get().and_then(Option::as_ref).and_then(|t| t.points.first()).map_or(0.0, |q| q.0)
            }
            Footprint::Circle(c) => c.tile.get().and_then(|t| t.map(|(_, q)| q.0)).unwrap_or(0.0),
        }
    }

    /// How far point `p` lies outside the footprint, in metres on the ground (0 when inside or
    /// on the boundary): for a circle the geodesic distance to its centre less its radius; for a
    /// polygon the distance to its nearest edge in the gnomonic plane about `p` (distances from
    /// the plane's centre are exact there along geodesics through it, so this is within the
    /// projection's error of the true distance). A polygon too far away to project about `p`
    /// (a quarter of the earth) gives the distance to its nearest vertex, an upper bound that
    /// is only ever used to explain, never to decide.
    pub fn distance_outside_m(&self, p: LatLng) -> f64 {
        match self {
            Footprint::Circle(c) => (geodesic_distance_m(c.center, p) - c.radius_m).max(0.0),
            Footprint::Polygon(poly) => match project_all(p, &poly.vertices) {
                Some(projected) => {
                    let origin = (0.0, 0.0);
                    if planar::point_in_polygon(origin, &projected) {
                        return 0.0;
                    }
                    let n = projected.len();
                    (0..n)
                        .map(|i| planar::point_segment_distance(origin, projected[i], projected[(i + 1) % n]).0)
                        .fold(f64::INFINITY, f64::min)
                }
                None => poly.vertices.iter().map(|v| geodesic_distance_m(*v, p)).fold(f64::INFINITY, f64::min),
            },
        }
    }

    pub fn bbox(&self) -> GeoBox {
        match self {
            Footprint::Polygon(p) => p.bbox,
            Footprint::Circle(c) => c.bbox,
        }
    }

    pub fn area_m2(&self) -> f64 {
        match self {
            Footprint::Polygon(p) => p.area_m2,
            Footprint::Circle(c) => std::f64::consts::PI * c.radius_m * c.radius_m,
        }
    }

    /// The test through cached tile projections, when both footprints have one in the same tile
    /// and the planar answer is beyond the projection's error bounds; `None` otherwise.
    pub(crate) fn same_tile_test(&self, other: &Footprint) -> Option<bool> {
        match (self, other) {
            (Footprint::Polygon(a), Footprint::Polygon(b)) => a.same_tile_test(b),
            (Footprint::Circle(c), Footprint::Polygon(p)) | (Footprint::Polygon(p), Footprint::Circle(c)) => {
                let ((key, center), tp) = (c.tile()?, p.tile()?);
                if key != tp.key {
                    return None;
                }
                circle_polygon_in_plane(center, c.radius_m, &tp.points)
            }
            (Footprint::Circle(a), Footprint::Circle(b)) => {
                let ((ka, pa), (kb, pb)) = (a.tile()?, b.tile()?);
                if ka != kb {
                    return None;
                }
                circles_in_plane(pa, a.radius_m, pb, b.radius_m)
            }
        }
    }

    /// Exact test: do the two closed footprints share a point?
    pub fn intersects(&self, other: &Footprint) -> bool {
        if !self.bbox().intersects(&other.bbox()) {
            return false;
        }
        if let Some(hit) = self.same_tile_test(other) {
            return hit;
        }
        match (self, other) {
            (Footprint::Circle(a), Footprint::Circle(b)) => {
                geodesic_distance_m(a.center, b.center) <= a.radius_m + b.radius_m
            }
            (Footprint::Circle(c), Footprint::Polygon(p)) | (Footprint::Polygon(p), Footprint::Circle(c)) => {
                circle_meets_polygon(c, p)
            }
            (Footprint::Polygon(a), Footprint::Polygon(b)) => {
                // Between the two polygons' centres: right across the antimeridian and at poles.
                let center = mean_point(&[a.center, b.center]);
                match (project_all(center, &a.vertices), project_all(center, &b.vertices)) {
                    (Some(pa), Some(pb)) => planar::polygons_intersect(&pa, &pb),
                    // Not reachable for shapes that passed validation and whose boxes overlap;
                    // answer conservatively.
                    _ => true,
                }
            }
        }
    }
}

/// A footprint's convex hull in a gnomonic plane: a convex polygon, or a disk.
enum Hull {
    Polygon(Vec<P>),
    Disk(P, f64),
}

/// Convex hull of points (Andrew's monotone chain), counter-clockwise.
fn convex_hull(mut points: Vec<P>) -> Vec<P> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: P, a: P, b: P| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut lower: Vec<P> = Vec::new();
    for &p in &points {
        while lower.len() >= 2 && cross(lower[lower.len() - 2], lower[lower.len() - 1], p) <= 0.0 {
            lower.pop();
        }
        lower.push(p);
    }
    let mut upper: Vec<P> = Vec::new();
    for &p in points.iter().rev() {
        while upper.len() >= 2 && cross(upper[upper.len() - 2], upper[upper.len() - 1], p) <= 0.0 {
            upper.pop();
        }
        upper.push(p);
    }
    lower.pop();
    upper.pop();
    lower.extend(upper);
    lower
}

fn point_to_polygon(p: P, poly: &[P]) -> f64 {
    if poly.len() >= 3 && planar::point_in_polygon(p, poly) {
        return 0.0;
    }
    let n = poly.len();
    (0..n).map(|i| planar::point_segment_distance(p, poly[i], poly[(i + 1) % n]).0).fold(f64::INFINITY, f64::min)
}

impl Hull {
    /// Planar distance between two hulls (0 when they meet).
    fn distance(&self, other: &Hull) -> f64 {
        match (self, other) {
            (Hull::Disk(a, ra), Hull::Disk(b, rb)) => {
                (((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() - ra - rb).max(0.0)
            }
            (Hull::Disk(c, r), Hull::Polygon(p)) | (Hull::Polygon(p), Hull::Disk(c, r)) => {
                (point_to_polygon(*c, p) - r).max(0.0)
            }
            (Hull::Polygon(a), Hull::Polygon(b)) => {
                if a.len() >= 3 && b.len() >= 3 && planar::polygons_intersect(a, b) {
                    return 0.0;
                }
                let from_a = a.iter().map(|p| point_to_polygon(*p, b)).fold(f64::INFINITY, f64::min);
                let from_b = b.iter().map(|p| point_to_polygon(*p, a)).fold(f64::INFINITY, f64::min);
                from_a.min(from_b)
            }
        }
    }
}

impl Footprint {
    /// The point pairwise projections are centred on.
    fn reference(&self) -> LatLng {
        match self {
            Footprint::Polygon(p) => p.center,
            Footprint::Circle(c) => c.center,
        }
    }

    /// Distance between the hulls in the shared tile plane, when both shapes have one there.
    fn tile_hull_distance(&self, other: &Footprint) -> Option<f64> {
        let tiled = |f: &Footprint| -> Option<((i32, i32), Hull)> {
            match f {
                Footprint::Polygon(p) => p.tile().map(|t| (t.key, Hull::Polygon(t.hull().to_vec()))),
                Footprint::Circle(c) => c.tile().map(|(k, q)| (k, Hull::Disk(q, c.radius_m))),
            }
        };
        let ((ka, a), (kb, b)) = (tiled(self)?, tiled(other)?);
        (ka == kb).then(|| a.distance(&b))
    }

    fn hull_in(&self, center: LatLng) -> Option<Hull> {
        match self {
            Footprint::Polygon(p) => project_all(center, &p.vertices).map(|pts| Hull::Polygon(convex_hull(pts))),
            Footprint::Circle(c) => gnomonic(center, c.center).map(|q| Hull::Disk(q, c.radius_m)),
        }
    }

    /// Discovery's generous match: do the two footprints' convex hulls, each padded by
    /// `margin_m`, meet? Always true when the footprints intersect (relevance is a superset of
    /// intersection); also true for shapes that interlock or pass within twice the margin.
    /// Distances between hulls are taken in a gnomonic plane about the pair (good to 1e-3 of
    /// the distance, ample for a margin of metres); intersection itself is decided exactly.
    pub fn relevant_to(&self, other: &Footprint, margin_m: f64) -> bool {
        let reach = 2.0 * margin_m.max(0.0);
        if !self.bbox().padded(reach).intersects(&other.bbox()) {
            return false;
        }
        self.intersects(other) || self.relevant_beyond(other, margin_m)
    }

    /// The hull part of [`Self::relevant_to`], for a caller that already knows the two do not
    /// intersect: do the padded hulls meet anyway?
    pub fn relevant_beyond(&self, other: &Footprint, margin_m: f64) -> bool {
        let reach = 2.0 * margin_m.max(0.0);
        if !self.bbox().padded(reach).intersects(&other.bbox()) {
            return false;
        }
        // Both in one tile: compare the cached tile-plane hulls, with no geodesic work.
        if let Some(d) = self.tile_hull_distance(other) {
            return d <= reach;
        }
        if let (Footprint::Circle(a), Footprint::Circle(b)) = (self, other) {
            return geodesic_distance_m(a.center, b.center) - a.radius_m - b.radius_m <= reach;
        }
        let center = mean_point(&[self.reference(), other.reference()]);
        match (self.hull_in(center), other.hull_in(center)) {
            (Some(a), Some(b)) => a.distance(&b) <= reach,
            // Not projectable about one centre: the shapes are far apart.
            _ => false,
        }
    }
}

/// Most a containment test lets a shape stick out of another, in metres: rounding in the
/// projections must not refuse a shape that lies exactly on the other's boundary (the same
/// polygon, a vertex on an edge), and nothing a subscription's coverage needs is smaller.
pub const CONTAINMENT_TOLERANCE_M: f64 = 0.5;

/// Points on a circle approximated by a circumscribed polygon, when the circle cannot be
/// projected about its own centre together with a polygon (see [`Footprint::contains`]).
const CIRCUMSCRIBED_SIDES: usize = 64;

impl Footprint {
    /// Does this closed footprint contain all of `inner` (to within `tolerance_m`, at most a
    /// metre)? Exact in the same sense as [`Self::intersects`]:
    ///
    /// - polygon in polygon: both projected about one centre (geodesic edges are straight
    ///   lines there), then every edge of `inner` cut where it meets `outer`'s boundary and each
    ///   piece tested (`planar::polygon_within_polygon`); a simple polygon contains another
    ///   exactly when it contains its boundary;
    /// - circle in polygon: the polygon projected about the circle's centre; the centre must be
    ///   inside and every edge at least the circle's projected radius away from it;
    /// - polygon in circle: every vertex within the radius (a geodesic disk of these sizes is
    ///   geodesically convex, so the edges between them are inside too);
    /// - circle in circle: distance between centres plus the inner radius within the outer's.
    ///
    /// The gnomonic plane only stretches distances (its scale is at least 1 everywhere), so a
    /// tolerance measured in the plane is never more than the same tolerance on the ground.
    pub fn contains(&self, inner: &Footprint, tolerance_m: f64) -> bool {
        let tolerance_m = tolerance_m.clamp(0.0, 1.0);
        if !self.bbox().intersects(&inner.bbox()) {
            return false;
        }
        match (self, inner) {
            (Footprint::Circle(outer), Footprint::Circle(inner)) => {
                geodesic_distance_m(outer.center, inner.center) + inner.radius_m <= outer.radius_m + tolerance_m
            }
            (Footprint::Circle(outer), Footprint::Polygon(inner)) => {
                inner.vertices.iter().all(|v| geodesic_distance_m(outer.center, *v) <= outer.radius_m + tolerance_m)
            }
            (Footprint::Polygon(outer), Footprint::Circle(inner)) => circle_within_polygon(inner, outer, tolerance_m),
            (Footprint::Polygon(outer), Footprint::Polygon(inner)) => {
                if let (Some((ko, _, po)), Some((ki, _, pi))) = (outer.tile_plane(), inner.tile_plane()) {
                    if ko == ki {
                        return planar::polygon_within_polygon(pi, po, tolerance_m);
                    }
                }
                let center = mean_point(&[outer.center, inner.center]);
                match (project_all(center, &outer.vertices), project_all(center, &inner.vertices)) {
                    (Some(po), Some(pi)) => planar::polygon_within_polygon(&pi, &po, tolerance_m),
                    // Too far apart to share a plane: one cannot hold the other.
                    _ => false,
                }
            }
        }
    }
}

fn circle_within_polygon(c: &Circle, p: &Polygon, tolerance_m: f64) -> bool {
    let Some(projected) = project_all(c.center, &p.vertices) else {
        // A polygon reaching a quarter of the earth from the circle's centre: test a polygon
        // circumscribing the circle instead (it contains the circle, so this never says
        // "inside" wrongly; it may refuse a circle within a few metres of such a long edge).
        let r = c.radius_m / (std::f64::consts::PI / CIRCUMSCRIBED_SIDES as f64).cos();
        let ring: Vec<LatLng> = (0..CIRCUMSCRIBED_SIDES)
            .map(|i| {
                let azimuth = 360.0 * i as f64 / CIRCUMSCRIBED_SIDES as f64;
                let (lat, lng): (f64, f64) = WGS84.direct(c.center.lat, c.center.lng, azimuth, r);
                LatLng { lat, lng: wrap180(lng) }
            })
            .collect();
        let center = mean_point(&[p.center, c.center]);
        return match (project_all(center, &p.vertices), project_all(center, &ring)) {
            (Some(po), Some(pi)) => planar::polygon_within_polygon(&pi, &po, tolerance_m),
            _ => false,
        };
    };
    let origin = (0.0, 0.0);
    if !planar::point_in_polygon(origin, &projected) {
        return false;
    }
    let n = projected.len();
    (0..n).all(|i| {
        let (distance, closest) = planar::point_segment_distance(origin, projected[i], projected[(i + 1) % n]);
        distance + tolerance_m >= c.projected_radius_toward(closest)
    })
}

fn circle_meets_polygon(c: &Circle, p: &Polygon) -> bool {
    let Some(projected) = project_all(c.center, &p.vertices) else {
        return true;
    };
    let origin = (0.0, 0.0);
    if planar::point_in_polygon(origin, &projected) {
        return true;
    }
    let n = projected.len();
    let (distance, closest) = (0..n)
        .map(|i| planar::point_segment_distance(origin, projected[i], projected[(i + 1) % n]))
        .fold((f64::INFINITY, origin), |best, cand| if cand.0 < best.0 { cand } else { best });
    distance <= c.projected_radius_toward(closest)
}

#[cfg(test)]
pub(crate) mod testing {
    pub(crate) use super::{geodesic_distance_m, gnomonic, WGS84};
}
