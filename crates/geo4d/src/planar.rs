//! Exact-predicate planar geometry on projected coordinates (metres in the gnomonic plane).

pub(crate) type P = (f64, f64);

fn orient(a: P, b: P, c: P) -> f64 {
    (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
}

fn on_segment(a: P, b: P, p: P) -> bool {
    p.0 >= a.0.min(b.0) && p.0 <= a.0.max(b.0) && p.1 >= a.1.min(b.1) && p.1 <= a.1.max(b.1)
}

/// Closed segments `ab` and `cd` share at least one point.
pub(crate) fn segments_intersect(a: P, b: P, c: P, d: P) -> bool {
    let d1 = orient(c, d, a);
    let d2 = orient(c, d, b);
    let d3 = orient(a, b, c);
    let d4 = orient(a, b, d);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0)) && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0)) {
        return true;
    }
    (d1 == 0.0 && on_segment(c, d, a))
        || (d2 == 0.0 && on_segment(c, d, b))
        || (d3 == 0.0 && on_segment(a, b, c))
        || (d4 == 0.0 && on_segment(a, b, d))
}

/// Point in closed polygon (boundary counts as inside).
pub(crate) fn point_in_polygon(p: P, poly: &[P]) -> bool {
    let Some(&last) = poly.last() else { return false };
    let mut inside = false;
    let mut a = last;
    for &b in poly {
        if orient(a, b, p) == 0.0 && on_segment(a, b, p) {
            return true;
        }
        if (a.1 > p.1) != (b.1 > p.1) {
            let x = a.0 + (p.1 - a.1) * (b.0 - a.0) / (b.1 - a.1);
            if p.0 < x {
                inside = !inside;
            }
        }
        a = b;
    }
    inside
}

/// Two simple closed polygons share at least one point.
///
/// One vertex of either inside the other decides most overlapping pairs in O(n + m); only then
/// are edge pairs crossed, each skipped at once when its box misses the other polygon's box or
/// the other edge's box (disjoint boxes cannot cross).
pub(crate) fn polygons_intersect(a: &[P], b: &[P]) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if point_in_polygon(a[0], b) || point_in_polygon(b[0], a) {
        return true;
    }
    let bb = bounds(b);
    let mut a0 = a[a.len() - 1];
    for &a1 in a {
        let ea = edge_box(a0, a1);
        if boxes_meet(&ea, &bb) {
            let mut b0 = b[b.len() - 1];
            for &b1 in b {
                if boxes_meet(&ea, &edge_box(b0, b1)) && segments_intersect(a0, a1, b0, b1) {
                    return true;
                }
                b0 = b1;
            }
        }
        a0 = a1;
    }
    false
}

/// (min x, min y, max x, max y)
type Box2 = (f64, f64, f64, f64);

fn edge_box(a: P, b: P) -> Box2 {
    (a.0.min(b.0), a.1.min(b.1), a.0.max(b.0), a.1.max(b.1))
}

fn bounds(poly: &[P]) -> Box2 {
    poly.iter().fold((f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY), |b, p| {
        (b.0.min(p.0), b.1.min(p.1), b.2.max(p.0), b.3.max(p.1))
    })
}

fn boxes_meet(a: &Box2, b: &Box2) -> bool {
    a.0 <= b.2 && b.0 <= a.2 && a.1 <= b.3 && b.1 <= a.3
}

/// Distance from `p` to segment `ab`, and the closest point.
pub(crate) fn point_segment_distance(p: P, a: P, b: P) -> (f64, P) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 { 0.0 } else { (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0) };
    let q = (a.0 + t * dx, a.1 + t * dy);
    (((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt(), q)
}

/// Signed area by the shoelace formula.
pub(crate) fn signed_area(poly: &[P]) -> f64 {
    let n = poly.len();
    (0..n).map(|i| poly[i].0 * poly[(i + 1) % n].1 - poly[(i + 1) % n].0 * poly[i].1).sum::<f64>() / 2.0
}

/// How close, in metres of the plane, an outline may come to itself away from a shared vertex
/// before it counts as touching: far above the rounding of the projection (nanometres) and of
/// the edges' straightness in it for the sizes accepted, so that a vertex placed on another
/// edge is refused at every latitude, in both hemispheres, whatever the rounding.
pub(crate) const TOUCH_M: f64 = 1.0e-3;

/// Shortest distance between segments `ab` and `cd` (0 when they cross).
fn segment_distance(a: P, b: P, c: P, d: P) -> f64 {
    if segments_intersect(a, b, c, d) {
        return 0.0;
    }
    point_segment_distance(a, c, d)
        .0
        .min(point_segment_distance(b, c, d).0)
        .min(point_segment_distance(c, a, b).0)
        .min(point_segment_distance(d, a, b).0)
}

/// How a polygon's outline meets itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelfContact {
    /// Edges `i` and `j` cross.
    Cross(usize, usize),
    /// Edges `i` and `j` touch or overlap (a vertex on another edge, a spike folding back),
    /// within [`TOUCH_M`].
    Touch(usize, usize),
}

/// The first pair of edges that cross, touch or overlap other than at their shared vertex.
///
/// Decided with a tolerance, not by the sign of a rounded determinant: non-adjacent edges may
/// not come within [`TOUCH_M`] of each other, and adjacent edges may not fold back (the far end
/// of either within [`TOUCH_M`] of the other edge). Edge pairs whose boxes are further apart
/// than that are skipped at once.
pub(crate) fn first_crossing(poly: &[P]) -> Option<SelfContact> {
    let n = poly.len();
    let grown = |(x0, y0, x1, y1): Box2| (x0 - TOUCH_M, y0 - TOUCH_M, x1 + TOUCH_M, y1 + TOUCH_M);
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        let box_i = grown(edge_box(a, b));
        for j in (i + 1)..n {
            let (c, d) = (poly[j], poly[(j + 1) % n]);
            if !boxes_meet(&box_i, &edge_box(c, d)) {
                continue;
            }
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                // They share one vertex; they are bad if they fold back on each other: the far
                // end of one lies on (or within TOUCH_M of) the other.
                let (shared, far_i, far_j) = if j == i + 1 { (b, a, d) } else { (a, b, c) };
                if point_segment_distance(far_j, shared, far_i).0 <= TOUCH_M
                    || point_segment_distance(far_i, shared, far_j).0 <= TOUCH_M
                {
                    return Some(SelfContact::Touch(i, j));
                }
                continue;
            }
            if segments_intersect(a, b, c, d) {
                return Some(SelfContact::Cross(i, j));
            }
            if segment_distance(a, b, c, d) <= TOUCH_M {
                return Some(SelfContact::Touch(i, j));
            }
        }
    }
    None
}

/// Is `p` in the closed polygon, or within `tolerance` of its boundary?
pub(crate) fn point_within_polygon(p: P, poly: &[P], tolerance: f64) -> bool {
    if point_in_polygon(p, poly) {
        return true;
    }
    let n = poly.len();
    (0..n).any(|i| point_segment_distance(p, poly[i], poly[(i + 1) % n]).0 <= tolerance)
}

/// Does the closed segment `ab` lie inside the closed simple polygon `poly` (up to `tolerance`)?
/// Every cut beyond the two ends is taken from `budget`; when it runs out the answer is `false`
/// (see [`polygon_within_polygon`]).
///
/// The segment is cut at every point where it meets the polygon's boundary; between two cuts it
/// is wholly inside or wholly outside, so testing the ends and each piece's midpoint decides.
/// Rounding in a cut only moves it along the segment: a midpoint that lands next to the boundary
/// is within the tolerance of it, so the answer stays right.
fn segment_within_polygon(a: P, b: P, poly: &[P], tolerance: f64, budget: &mut usize) -> bool {
    let n = poly.len();
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let mut cuts = vec![0.0, 1.0];
    let seg_box = edge_box(a, b);
    for i in 0..n {
        let (c, d) = (poly[i], poly[(i + 1) % n]);
        if !boxes_meet(&seg_box, &edge_box(c, d)) {
            continue;
        }
        let (ex, ey) = (d.0 - c.0, d.1 - c.1);
        let denom = dx * ey - dy * ex;
        if denom != 0.0 {
            let t = ((c.0 - a.0) * ey - (c.1 - a.1) * ex) / denom;
            let u = ((c.0 - a.0) * dy - (c.1 - a.1) * dx) / denom;
            if (0.0..=1.0).contains(&t) && (0.0..=1.0).contains(&u) {
                cuts.push(t);
                *budget = budget.saturating_sub(1);
            }
        } else if len2 > 0.0 {
            // Parallel: where an overlapping (collinear) edge starts and ends along `ab`.
            for q in [c, d] {
                let t = ((q.0 - a.0) * dx + (q.1 - a.1) * dy) / len2;
                if (0.0..=1.0).contains(&t) {
                    cuts.push(t);
                    *budget = budget.saturating_sub(1);
                }
            }
        }
        if *budget == 0 {
            return false;
        }
    }
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
    cuts.iter().all(|&t| point_within_polygon(at(t), poly, tolerance))
        && cuts.windows(2).all(|w| point_within_polygon(at((w[0] + w[1]) / 2.0), poly, tolerance))
}

/// Does the closed simple polygon `inner` lie inside the closed simple polygon `outer` (up to
/// `tolerance`)? A simple polygon is simply connected, so `inner` lies inside it exactly when
/// `inner`'s boundary does: every edge is checked with [`segment_within_polygon`].
///
/// The work is bounded by the vertex counts: each cut costs one O(|outer|) point test, and the
/// cuts over all edges are limited to `8 (|inner| + |outer|) + 64`. Two simple outlines meeting
/// more often than that (combs touching comb) are answered "not inside": a refusal, never a
/// wrong "inside".
pub(crate) fn polygon_within_polygon(inner: &[P], outer: &[P], tolerance: f64) -> bool {
    let n = inner.len();
    let mut budget = 8 * (inner.len() + outer.len()) + 64;
    (0..n).all(|i| segment_within_polygon(inner[i], inner[(i + 1) % n], outer, tolerance, &mut budget))
}
