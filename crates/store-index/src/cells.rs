//! Change revisions per area cell, for [`store::Precondition::AreaUnchanged`]: "has anything of
//! this kind changed in this area since revision R?", answered in time bounded by a constant,
//! whatever the size of the area.
//!
//! Three levels. A change whose envelope covers at most [`MAX_CELLS`] fine cells (0.02°, about
//! 2 km) marks those, and the coarse cells (1°) that hold them, and the global revision. A larger
//! change marks the coarse cells of its envelope if there are at most [`MAX_CELLS`] of them, else
//! only the global "big change" revision, and always the global revision. A question is
//! answered at the finest level its area fits:
//!
//! | area of the question | looks at |
//! |---|---|
//! | fits fine cells | its fine cells, the big changes' coarse cells, the big changes' global revision |
//! | fits coarse cells | its coarse cells (every change marks them), the big changes' global revision |
//! | larger | the global revision |
//!
//! Proof that no change is missed: a change `W` and a question `E` whose envelopes meet share a
//! cell at every level at which both are marked or asked. A small `W` marks its fine cells, its
//! coarse cells and the global revision; a small `E` reads the fine ones, a middle `E` the coarse
//! ones, a large `E` the global one. A middle `W` marks its coarse cells in both coarse maps and
//! the global revision: a small `E` reads the big-change coarse cells, a middle `E` the coarse
//! cells, a large `E` the global. A large `W` marks both global revisions, which every `E`
//! reads. A hostile envelope (a sliver across a continent, a polar cap) therefore costs at most
//! [`MAX_CELLS`] map operations, never millions, and cannot stall a commit.

use std::collections::HashMap;

use geo4d::Envelope4;
use store::Revision;

/// Side of a fine cell in degrees (about 2 km). Coarse on purpose: cells only detect
/// concurrent changes near each other, exact geometry decides everything else.
pub(crate) const FINE_DEG: f64 = 0.02;
/// Side of a coarse cell in degrees.
pub(crate) const COARSE_DEG: f64 = 1.0;
/// Most cells one envelope marks or reads at one level.
pub(crate) const MAX_CELLS: i64 = 4096;

/// Cells of `e` at `side` degrees, as ranges, and their number.
fn range(e: &Envelope4, side: f64) -> ((i32, i32, i32, i32), i64) {
    let cell = |deg: f64| (deg / side).floor() as i32;
    let (x0, x1, y0, y1) = (cell(e.min[0]), cell(e.max[0]), cell(e.min[1]), cell(e.max[1]));
    let n = (i64::from(x1) - i64::from(x0) + 1) * (i64::from(y1) - i64::from(y0) + 1);
    ((x0, x1, y0, y1), n)
}

fn cells((x0, x1, y0, y1): (i32, i32, i32, i32)) -> impl Iterator<Item = (i32, i32)> {
    (x0..=x1).flat_map(move |x| (y0..=y1).map(move |y| (x, y)))
}

#[derive(Default)]
pub(crate) struct AreaCells {
    /// (kind tag, x, y) of 0.02° cells -> last change of a small envelope there.
    fine: HashMap<(u8, i32, i32), Revision>,
    /// (kind tag, x, y) of 1° cells -> last change of any envelope there (small or middle).
    coarse: HashMap<(u8, i32, i32), Revision>,
    /// The same for middle envelopes only (too large for fine cells).
    coarse_big: HashMap<(u8, i32, i32), Revision>,
    /// Per kind tag: last change anywhere, and last change of a large envelope.
    global: [Revision; KIND_TAGS],
    global_big: [Revision; KIND_TAGS],
}

/// How many kind tags there are (`state::kind_tag`: the four F3548 kinds and the two F3411).
pub(crate) const KIND_TAGS: usize = 6;

impl AreaCells {
    /// Records a change of kind `tag` over `e` at `revision`.
    pub(crate) fn mark(&mut self, tag: u8, e: &Envelope4, revision: Revision) {
        let t = usize::from(tag);
        self.global[t] = self.global[t].max(revision);
        let (fine, n_fine) = range(e, FINE_DEG);
        let (coarse, n_coarse) = range(e, COARSE_DEG);
        if n_fine <= MAX_CELLS {
            for (x, y) in cells(fine) {
                self.fine.insert((tag, x, y), revision);
            }
            for (x, y) in cells(coarse) {
                self.coarse.insert((tag, x, y), revision);
            }
        } else if n_coarse <= MAX_CELLS {
            for (x, y) in cells(coarse) {
                self.coarse.insert((tag, x, y), revision);
                self.coarse_big.insert((tag, x, y), revision);
            }
        } else {
            self.global_big[t] = self.global_big[t].max(revision);
        }
    }

    /// The latest revision of a change of kind `tag` that may meet `e` (0 if none).
    pub(crate) fn last_change(&self, tag: u8, e: &Envelope4) -> Revision {
        let t = usize::from(tag);
        let (fine, n_fine) = range(e, FINE_DEG);
        let (coarse, n_coarse) = range(e, COARSE_DEG);
        let at = |map: &HashMap<(u8, i32, i32), Revision>, c| {
            cells(c).map(|(x, y)| map.get(&(tag, x, y)).copied().unwrap_or(0)).max().unwrap_or(0)
        };
        if n_fine <= MAX_CELLS {
            at(&self.fine, fine).max(at(&self.coarse_big, coarse)).max(self.global_big[t])
        } else if n_coarse <= MAX_CELLS {
            at(&self.coarse, coarse).max(self.global_big[t])
        } else {
            self.global[t]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn envelope(lng: f64, lat: f64, w: f64, h: f64) -> Envelope4 {
        Envelope4 { min: [lng, lat, 0.0, 0.0], max: [lng + w, lat + h, 100.0, 100.0] }
    }

    /// Claim: after a change over `w` at revision r, every question whose area meets `w` sees a
    /// revision of at least r, at every combination of sizes; checked against the plain box
    /// test on 20,000 random pairs, with the sample shown to exercise every level.
    #[test]
    fn no_change_is_missed_at_any_size() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let size = |rng: &mut rand::rngs::StdRng| -> f64 {
            match rng.random_range(0..3) {
                0 => rng.random_range(0.0..0.5),
                1 => rng.random_range(1.0..40.0),
                _ => rng.random_range(60.0..200.0),
            }
        };
        let (mut meeting, mut levels) = (0, [[0usize; 3]; 3]);
        for i in 0..20_000u64 {
            let mut cells = AreaCells::default();
            let (ww, wh, ew, eh) =
                (size(&mut rng), size(&mut rng).min(170.0), size(&mut rng), size(&mut rng).min(170.0));
            let w = envelope(
                rng.random_range(-180.0..180.0 - ww.min(359.0)),
                rng.random_range(-85.0..85.0 - wh.min(169.0)),
                ww,
                wh,
            );
            let e = envelope(
                rng.random_range(-180.0..180.0 - ew.min(359.0)),
                rng.random_range(-85.0..85.0 - eh.min(169.0)),
                ew,
                eh,
            );
            cells.mark(0, &w, i + 1);
            if w.intersects(&e) {
                meeting += 1;
                assert!(cells.last_change(0, &e) > i, "missed: change {w:?}, question {e:?}");
                let level = |x: &Envelope4| {
                    if range(x, FINE_DEG).1 <= MAX_CELLS {
                        0
                    } else if range(x, COARSE_DEG).1 <= MAX_CELLS {
                        1
                    } else {
                        2
                    }
                };
                levels[level(&w)][level(&e)] += 1;
            }
            // Another kind is never disturbed.
            assert_eq!(cells.last_change(1, &e), 0);
        }
        assert!(meeting > 2_000, "the sample met too rarely: {meeting}");
        for (w, row) in levels.iter().enumerate() {
            for (e, n) in row.iter().enumerate() {
                assert!(*n > 0, "no meeting pair of change level {w} and question level {e}: {levels:?}");
            }
        }
    }

    #[test]
    fn a_polar_cap_or_a_continent_costs_a_bounded_number_of_cells() {
        let mut cells = AreaCells::default();
        cells.mark(0, &envelope(-180.0, 80.0, 360.0, 10.0), 1);
        cells.mark(0, &envelope(8.0, 10.0, 20.0, 60.0), 2);
        cells.mark(0, &envelope(-180.0, -90.0, 360.0, 180.0), 3);
        assert!(cells.fine.len() + cells.coarse.len() + cells.coarse_big.len() <= 3 * MAX_CELLS as usize);
        assert_eq!(cells.last_change(0, &envelope(8.5, 47.5, 0.01, 0.01)), 3);
    }
}
