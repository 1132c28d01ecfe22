//! The DSS's read-only airspace map (`GET /map`, data at `GET /map/data?bbox=w,s,e,n`): the
//! references the DSS holds in a box (F3548 intents and constraints, F3411 ISAs), drawn by the `map` crate's page. No OVN is ever shown
//! (`MapEntity::ovn` stays empty) and there are no details: the DSS holds none.

use map::{EntityKind, MapEntity, MapView, MapVolume};

use crate::error::ApiError;

/// Most entities drawn at once; the view says when more were found.
const MAX_ENTITIES: usize = 5_000;

pub(crate) fn parse_bbox(text: Option<&str>) -> Result<[f64; 4], ApiError> {
    let bad =
        |why: &str| ApiError::Wire(api::WireError::bad(format!("bbox: {why}; give west,south,east,north in degrees")));
    let text = text.ok_or_else(|| bad("missing"))?;
    let parts: Vec<f64> =
        text.split(',').map(|p| p.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|_| bad("not numbers"))?;
    match parts.as_slice() {
        [w, s, e, n] => Ok([*w, *s, *e, *n]),
        _ => Err(bad("four numbers are needed")),
    }
}

pub(crate) fn view(viewer: &str, airspace: &dss::Airspace) -> MapView {
    let mut entities = Vec::new();
    for i in &airspace.intents {
        entities.push(MapEntity {
            kind: EntityKind::OtherIntent,
            id: i.id.to_string(),
            manager: i.manager.as_str().to_owned(),
            state: Some(i.state.as_str().to_owned()),
            priority: None,
            version: Some(i.version),
            ovn: None,
            uss_base_url: Some(i.uss_base_url.clone()),
            details: false,
            volumes: MapVolume::list(&i.extents, &[]),
        });
    }
    for c in &airspace.constraints {
        entities.push(MapEntity {
            kind: EntityKind::Constraint,
            id: c.id.to_string(),
            manager: c.manager.as_str().to_owned(),
            state: None,
            priority: None,
            version: Some(c.version),
            ovn: None,
            uss_base_url: Some(c.uss_base_url.clone()),
            details: false,
            volumes: MapVolume::list(&c.extents, &[]),
        });
    }
    for isa in &airspace.isas {
        entities.push(MapEntity {
            kind: EntityKind::IdentificationServiceArea,
            id: isa.id.to_string(),
            manager: isa.manager.as_str().to_owned(),
            state: None,
            priority: None,
            // An ISA's version is an opaque string on the wire, not a number.
            version: None,
            ovn: None,
            uss_base_url: Some(isa.url.clone()),
            details: false,
            volumes: MapVolume::list(std::slice::from_ref(&isa.extents), &[]),
        });
    }
    let truncated = entities.len() > MAX_ENTITIES;
    entities.truncate(MAX_ENTITIES);
    MapView::new("dss", viewer.to_owned(), entities, truncated)
}
