//! The airspace map's read: every intent and constraint reference in a box, for a caller with
//! the map scope (`Config::map_scope`). References only: what the DSS holds, never an OVN (the
//! server's view has no field for one). A box larger than one query may cover is cut into
//! cells of at most `CELL_DEG` degrees and the results merged.

use std::collections::HashSet;
use std::sync::Arc;

use geo4d::{AltitudeBand, Footprint, LatLng, Polygon, TimeWindow, Volume4D};
use model::{Constraint, OperationalIntent};
use store::Store;

use crate::{Dss, DssError};

/// Side of a query cell in degrees of latitude (longitude widened by latitude): about 40 km,
/// under the 2,500 km² a single area may cover.
const CELL_DEG: f64 = 0.35;
/// Most cells one map read may query: about 160,000 km².
pub const MAX_MAP_CELLS: usize = 100;

/// What the map shows.
#[derive(Debug, Default)]
pub struct Airspace {
    pub intents: Vec<Arc<OperationalIntent>>,
    pub constraints: Vec<Arc<Constraint>>,
    /// F3411 identification service areas (Remote ID), drawn as their own layer.
    pub isas: Vec<Arc<model::rid::Isa>>,
}

/// The cells covering `[west, south, east, north]` over `time`.
fn cells(bbox: [f64; 4], time: TimeWindow) -> Result<Vec<Volume4D>, DssError> {
    let [west, south, east, north] = bbox;
    let valid = bbox.iter().all(|v| v.is_finite())
        && (-180.0..=180.0).contains(&west)
        && (-180.0..=180.0).contains(&east)
        && (-90.0..=90.0).contains(&south)
        && (-90.0..=90.0).contains(&north)
        && west < east
        && south < north;
    if !valid {
        return Err(DssError::BadRequest(format!(
            "bbox must be west,south,east,north in degrees with west < east and south < north (got {west},{south},{east},{north})"
        )));
    }
    // Cells stay below the polar caps' distortion: the map is for inhabited latitudes.
    let (south, north) = (south.max(-85.0), north.min(85.0));
    let widest = south.abs().max(north.abs()).to_radians().cos().max(0.1);
    let dlat = CELL_DEG;
    let dlng = CELL_DEG / widest;
    let rows = ((north - south) / dlat).ceil().max(1.0) as usize;
    let cols = ((east - west) / dlng).ceil().max(1.0) as usize;
    if rows.saturating_mul(cols) > MAX_MAP_CELLS {
        return Err(DssError::TooLarge(format!(
            "the box covers {} query cells of about 40 km; at most {MAX_MAP_CELLS} at once: zoom in",
            rows.saturating_mul(cols)
        )));
    }
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let s = south + r as f64 * dlat;
            let n = (s + dlat).min(north);
            let w = west + c as f64 * dlng;
            let e = (w + dlng).min(east);
            let p = |lat: f64, lng: f64| LatLng::new(lat, lng);
            let polygon = Polygon::new(vec![p(s, w)?, p(s, e)?, p(n, e)?, p(n, w)?])?;
            out.push(Volume4D { footprint: Footprint::Polygon(polygon), altitude: AltitudeBand::unbounded(), time });
        }
    }
    Ok(out)
}

impl<S: Store> Dss<S> {
    /// Every intent and constraint reference and every Remote ID ISA in `bbox` live between an hour ago and `hours`
    /// hours from now (what the map's time slider can show).
    pub async fn airspace(&self, caller: &auth::Caller, bbox: [f64; 4], hours: u32) -> Result<Airspace, DssError> {
        caller.require_any(&[self.config.map_scope])?;
        let now = self.clock.now();
        let time = TimeWindow::new(
            Some(now.plus_seconds(-3600)),
            Some(now.plus_seconds(i64::from(hours.clamp(1, 24 * 7)) * 3600)),
        )?;
        let area = cells(bbox, time)?;
        self.fresh().await?;
        let how = store::Match::Exact;
        let mut out = Airspace::default();
        let mut seen = HashSet::new();
        for r in self.store.search_intents(&area, how).await? {
            if seen.insert(r.value.id) {
                out.intents.push(r.value);
            }
        }
        for r in self.store.search_constraints(&area, how).await? {
            if seen.insert(r.value.id) {
                out.constraints.push(r.value);
            }
        }
        // ISAs are their own entities (an ISA may share an id with an intent): deduplicated apart.
        let mut seen_isas = HashSet::new();
        for r in self.store.search_isas(&area, how).await? {
            if seen_isas.insert(r.value.id) {
                out.isas.push(r.value);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_city_box_is_one_cell_and_a_continent_is_refused() {
        let t = TimeWindow::unbounded();
        assert_eq!(cells([8.0, 47.0, 8.1, 47.1], t).expect("valid in the test").len(), 1);
        let region = cells([7.0, 46.5, 9.0, 47.5], t).expect("valid in the test");
        assert!(region.len() > 1 && region.len() <= MAX_MAP_CELLS, "{}", region.len());
        for v in &region {
            assert!(v.footprint.area_m2() < 2500.0e6, "{}", v.footprint.area_m2());
        }
        assert!(matches!(cells([-10.0, 35.0, 30.0, 60.0], t), Err(DssError::TooLarge(_))));
        assert!(matches!(cells([8.1, 47.0, 8.0, 47.1], t), Err(DssError::BadRequest(_))));
        assert!(matches!(cells([f64::NAN, 47.0, 8.0, 47.1], t), Err(DssError::BadRequest(_))));
    }
}
