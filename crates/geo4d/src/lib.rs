//! 4D volumes (a polygon or circle footprint on the WGS84 ellipsoid, an altitude band and a time
//! window), their validation, envelopes for indexing and exact intersection.
//!
//! This crate exists so that "do these two operations overlap?" has exactly one answer in the
//! whole system, decided on the real shapes rather than on a grid approximation. It does no IO,
//! knows nothing about HTTP, wire field names or storage.
//!
//! # Earth model
//!
//! Positions are WGS84 geodetic latitude/longitude in degrees. Polygon edges are geodesics
//! (shortest paths on the ellipsoid), as ASTM F3548-21 defines them; circles are the set of points
//! within a geodesic distance of their centre. Pairs of shapes are compared in the ellipsoidal
//! gnomonic projection (Karney 2013) centred near them: it maps geodesics through the centre to
//! straight lines exactly and all other geodesics to lines straight to well under a centimetre
//! over the areas this crate accepts (see the `gnomonic_edges_are_straight` test). Circle radii
//! are compared along true geodesics computed by GeographicLib.

mod planar;
mod prepared;
mod shapes;
mod time;

pub use prepared::{PreparedArea, SHARED_PROJECTION_RADIUS_M};
pub use shapes::{
    destination, geodesic_distance_m, Circle, Footprint, GeoBox, LatLng, Polygon, CONTAINMENT_TOLERANCE_M,
};
pub use time::{TimeWindow, Timestamp};

/// Limits applied to every accepted shape. They keep exact geometry cheap and bounded.
pub mod limits {
    /// Most vertices one polygon may have.
    pub const MAX_POLYGON_VERTICES: usize = 1000;
    /// Largest footprint area accepted, in square kilometres (the reference DSS also refuses
    /// areas above 2500 km²).
    pub const MAX_AREA_KM2: f64 = 2500.0;
    /// Largest circle radius accepted, in metres: a circle of this radius has the maximum area.
    pub const MAX_RADIUS_M: f64 = 28_209.0;
    /// Altitude bounds of the standard's `Altitude` schema, in metres.
    pub const MIN_ALTITUDE_M: f64 = -8000.0;
    pub const MAX_ALTITUDE_M: f64 = 100_000.0;
}

/// Why a shape or volume was refused. Every message tells the caller what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GeoError {
    #[error("latitude {0} is not a number between -90 and 90")]
    LatitudeOutOfRange(f64),
    #[error("longitude {0} is not a number between -180 and 180")]
    LongitudeOutOfRange(f64),
    #[error("a polygon needs at least 3 vertices, got {0}")]
    TooFewVertices(usize),
    #[error("a polygon may have at most {max} vertices, got {got}")]
    TooManyVertices { got: usize, max: usize },
    #[error("polygon vertices {0} and {1} are identical; vertices may not be duplicated (do not repeat the first vertex at the end)")]
    DuplicateVertex(usize, usize),
    #[error("polygon edges {0} and {1} cross; edges of a polygon may not cross")]
    CrossingEdges(usize, usize),
    #[error(
        "polygon edges {0} and {1} touch or overlap (a vertex lies on another edge, within a millimetre, or the outline folds back on itself); the outline of a polygon may not touch itself"
    )]
    TouchingEdges(usize, usize),
    #[error("polygon has zero area (all vertices lie on one line)")]
    Degenerate,
    #[error(
        "shape spans too much of the earth (its vertices are more than half the globe apart in longitude, or a quarter of a great circle from their centre); split it into smaller volumes"
    )]
    TooWide,
    #[error("circle radius {0} m is not a positive finite number")]
    InvalidRadius(f64),
    #[error("area of {area_km2:.1} km² exceeds the limit of {max_km2} km²")]
    AreaTooLarge { area_km2: f64, max_km2: f64 },
    #[error("altitude {0} m is outside [-8000, 100000] m or not a number")]
    AltitudeOutOfRange(f64),
    #[error("altitude_lower ({lower} m) is above altitude_upper ({upper} m)")]
    InvertedAltitude { lower: f64, upper: f64 },
    #[error("time_end is before time_start")]
    InvertedTime,
}

impl GeoError {
    /// True when the shape is valid but too large; the standard answers these with 413.
    pub fn is_too_large(&self) -> bool {
        matches!(self, GeoError::AreaTooLarge { .. } | GeoError::TooWide)
    }
}

/// A closed altitude interval in metres above the WGS84 ellipsoid. Either bound may be open
/// (infinite) in a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AltitudeBand {
    lower_m: f64,
    upper_m: f64,
}

impl AltitudeBand {
    /// A band with optional bounds; `None` means unbounded on that side.
    pub fn new(lower_m: Option<f64>, upper_m: Option<f64>) -> Result<Self, GeoError> {
        for v in [lower_m, upper_m].into_iter().flatten() {
            if !v.is_finite() || !(limits::MIN_ALTITUDE_M..=limits::MAX_ALTITUDE_M).contains(&v) {
                return Err(GeoError::AltitudeOutOfRange(v));
            }
        }
        let lower = lower_m.unwrap_or(f64::NEG_INFINITY);
        let upper = upper_m.unwrap_or(f64::INFINITY);
        if lower > upper {
            return Err(GeoError::InvertedAltitude { lower, upper });
        }
        Ok(Self { lower_m: lower, upper_m: upper })
    }

    pub fn unbounded() -> Self {
        Self { lower_m: f64::NEG_INFINITY, upper_m: f64::INFINITY }
    }
    pub fn lower_m(&self) -> Option<f64> {
        self.lower_m.is_finite().then_some(self.lower_m)
    }
    pub fn upper_m(&self) -> Option<f64> {
        self.upper_m.is_finite().then_some(self.upper_m)
    }
    /// Closed intervals: bands that touch overlap.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.lower_m <= other.upper_m && other.lower_m <= self.upper_m
    }
    /// The smallest band containing both.
    pub fn union(&self, other: &Self) -> Self {
        Self { lower_m: self.lower_m.min(other.lower_m), upper_m: self.upper_m.max(other.upper_m) }
    }
    fn clamped(&self) -> (f64, f64) {
        (self.lower_m.max(-1.0e6), self.upper_m.min(1.0e6))
    }
}

/// A footprint extruded over an altitude band and a time window: one 4D volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume4D {
    pub footprint: Footprint,
    pub altitude: AltitudeBand,
    pub time: TimeWindow,
}

/// Axis-aligned bounds of a volume in (longitude°, latitude°, altitude m, time s) for indexing,
/// with longitudes within [-180, 180]: a volume across the antimeridian has two. Together
/// they contain the exact shape; they never decide an intersection on their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Envelope4 {
    pub min: [f64; 4],
    pub max: [f64; 4],
}

impl Envelope4 {
    pub fn intersects(&self, other: &Self) -> bool {
        (0..4).all(|axis| self.min[axis] <= other.max[axis] && other.min[axis] <= self.max[axis])
    }
}

impl Volume4D {
    /// One envelope, or two for a footprint across the antimeridian (split at ±180); a polar
    /// cap's covers every longitude.
    pub fn envelopes(&self) -> impl Iterator<Item = Envelope4> {
        let (alt_lo, alt_hi) = self.altitude.clamped();
        let (t_lo, t_hi) = self.time.as_seconds_f64();
        self.footprint.bbox().parts().map(move |b| Envelope4 {
            min: [b.min_lng, b.min_lat, alt_lo, t_lo],
            max: [b.max_lng, b.max_lat, alt_hi, t_hi],
        })
    }

    /// Envelopes reaching as far as `how` can match: with relevance, widened by its reach.
    /// Stored volumes keep their own envelopes; a query widened so finds every match.
    pub fn envelopes_for(&self, how: Match) -> impl Iterator<Item = Envelope4> {
        let (alt_lo, alt_hi) = self.altitude.clamped();
        let (t_lo, t_hi) = self.time.as_seconds_f64();
        self.footprint.bbox().padded(how.reach_m()).parts().map(move |b| Envelope4 {
            min: [b.min_lng, b.min_lat, alt_lo, t_lo],
            max: [b.max_lng, b.max_lat, alt_hi, t_hi],
        })
    }

    /// Relevance: overlapping time and altitude, and footprints whose padded convex hulls
    /// meet ([`Footprint::relevant_to`]).
    pub fn relevant_to(&self, other: &Self, margin_m: f64) -> bool {
        self.time.overlaps(&other.time)
            && self.altitude.overlaps(&other.altitude)
            && self.footprint.relevant_to(&other.footprint, margin_m)
    }

    /// [`Self::relevant_to`] for a pair already known not to intersect.
    pub fn relevant_beyond(&self, other: &Self, margin_m: f64) -> bool {
        self.time.overlaps(&other.time)
            && self.altitude.overlaps(&other.altitude)
            && self.footprint.relevant_beyond(&other.footprint, margin_m)
    }

    /// Exact intersection of two closed 4D volumes: time first, then altitude, then footprint,
    /// cheapest test first.
    pub fn intersects(&self, other: &Self) -> bool {
        self.time.overlaps(&other.time)
            && self.altitude.overlaps(&other.altitude)
            && self.footprint.intersects(&other.footprint)
    }
}

/// True when any volume of `a` intersects any volume of `b`.
pub fn any_intersect(a: &[Volume4D], b: &[Volume4D]) -> bool {
    a.iter().any(|va| b.iter().any(|vb| va.intersects(vb)))
}

/// How an area is matched against volumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Match {
    /// The volumes intersect: what key checks and conflicts are decided on.
    Exact,
    /// The volumes' relevance regions meet (overlapping time and altitude, footprints'
    /// convex hulls padded by `margin_m` each): what discovery uses, a superset of `Exact`.
    Relevant { margin_m: f64 },
}

impl Match {
    /// How far beyond a volume's own footprint a match can reach, in metres.
    pub fn reach_m(self) -> f64 {
        match self {
            Match::Exact => 0.0,
            Match::Relevant { margin_m } => 2.0 * margin_m.max(0.0),
        }
    }
}

/// True when any volume of `a` matches any volume of `b` as `how` says.
pub fn any_match(a: &[Volume4D], b: &[Volume4D], how: Match) -> bool {
    match how {
        Match::Exact => any_intersect(a, b),
        Match::Relevant { margin_m } => a.iter().any(|va| b.iter().any(|vb| va.relevant_to(vb, margin_m))),
    }
}

#[cfg(test)]
mod tests;
