//! An area prepared for many exact tests against candidates from an index: its polygons are
//! projected once, about one centre, instead of once per candidate pair. Candidates whose
//! bounding box reaches farther than [`SHARED_PROJECTION_RADIUS_M`] from that centre fall back
//! to the pairwise test, as do circles too close to call within the projection's error bounds,
//! so the answer is always the exact one (see the
//! `shared_projection_centre_keeps_edges_straight` test for the bound).

use crate::planar::{self, P};
use crate::shapes::{circle_polygon_in_plane, circles_in_plane, gnomonic, project_all, within_radius};
use crate::{Footprint, GeoBox, LatLng, Volume4D};

/// Farthest a projected point may lie from the shared centre.
pub const SHARED_PROJECTION_RADIUS_M: f64 = 60_000.0;

pub struct PreparedArea<'a> {
    volumes: &'a [Volume4D],
    center: LatLng,
    /// `volumes` projected about `center` (`None` if too far from it).
    projected: Vec<Option<Projected>>,
}

enum Projected {
    Polygon(Vec<P>),
    Circle(P, f64),
}

fn box_center(b: &GeoBox) -> LatLng {
    b.center()
}

impl<'a> PreparedArea<'a> {
    pub fn new(volumes: &'a [Volume4D]) -> Self {
        let boxes: Vec<GeoBox> = volumes.iter().map(|v| v.footprint.bbox()).collect();
        let union = boxes.iter().copied().reduce(|a, b| a.union(&b));
        // The centre of the first polygon's tile when it serves the whole area: that polygon's
        // cached projection is reused and no vertex is projected again.
        let tile = volumes.iter().find_map(|v| match &v.footprint {
            Footprint::Polygon(p) => p.tile_plane(),
            Footprint::Circle(_) => None,
        });
        let center = match (tile, union) {
            (Some((_, c, _)), Some(u)) if within_radius(c, &u, SHARED_PROJECTION_RADIUS_M) => c,
            (_, Some(u)) => box_center(&u),
            (_, None) => LatLng::ORIGIN,
        };
        let mut area = Self { volumes, center, projected: Vec::with_capacity(volumes.len()) };
        for v in volumes {
            let p = match &v.footprint {
                Footprint::Polygon(poly) => match poly.tile_plane() {
                    Some((_, c, points)) if c == center => Some(Projected::Polygon(points.to_vec())),
                    _ if area.near(&poly.bbox()) => project_all(center, poly.vertices()).map(Projected::Polygon),
                    _ => None,
                },
                Footprint::Circle(c) if area.near(&c.bbox()) => {
                    gnomonic(center, c.center()).map(|p| Projected::Circle(p, c.radius_m()))
                }
                _ => None,
            };
            area.projected.push(p);
        }
        area
    }

    /// Is every point of `b` surely within the shared radius of the centre?
    fn near(&self, b: &GeoBox) -> bool {
        self.center.lat().abs() <= 70.0 && within_radius(self.center, b, SHARED_PROJECTION_RADIUS_M)
    }

    /// Exact: does any volume of `others` intersect any volume of the area?
    pub fn intersects_any(&self, others: &[Volume4D]) -> bool {
        self.volumes.iter().zip(&self.projected).any(|(mine, proj)| others.iter().any(|o| self.pair(mine, proj, o)))
    }

    fn pair(&self, mine: &Volume4D, proj: &Option<Projected>, other: &Volume4D) -> bool {
        if !(mine.time.overlaps(&other.time) && mine.altitude.overlaps(&other.altitude)) {
            return false;
        }
        if !mine.footprint.bbox().intersects(&other.footprint.bbox()) {
            return false;
        }
        if let Some(hit) = mine.footprint.same_tile_test(&other.footprint) {
            return hit;
        }
        let planar = match (proj, &other.footprint) {
            (Some(mine), Footprint::Polygon(b)) if self.near(&b.bbox()) => {
                b.vertices().iter().map(|v| gnomonic(self.center, *v)).collect::<Option<Vec<_>>>().and_then(|pb| {
                    match mine {
                        Projected::Polygon(pa) => Some(planar::polygons_intersect(pa, &pb)),
                        Projected::Circle(c, r) => circle_polygon_in_plane(*c, *r, &pb),
                    }
                })
            }
            (Some(mine), Footprint::Circle(b)) if self.near(&b.bbox()) => {
                gnomonic(self.center, b.center()).and_then(|pb| match mine {
                    Projected::Polygon(pa) => circle_polygon_in_plane(pb, b.radius_m(), pa),
                    Projected::Circle(c, r) => circles_in_plane(*c, *r, pb, b.radius_m()),
                })
            }
            _ => None,
        };
        planar.unwrap_or_else(|| mine.footprint.intersects(&other.footprint))
    }
}
