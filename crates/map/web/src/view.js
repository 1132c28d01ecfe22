// Pure functions of the map: no DOM, no network. What the page draws for a view at a time,
// the colours of each kind and state, and the texts of explanations.

// What became of an operator's request: the participant's `operator::Outcome`, serialized in
// snake_case. The only place the page names them (a Rust test checks they agree).
export const OUTCOME = Object.freeze({
  PLANNED: 'planned',
  REFUSED: 'refused',
  PUBLISHED: 'published',
  ENDED: 'ended',
  SUBSCRIBED: 'subscribed',
});

// The sentence opening an outcome that is not a refusal.
export function outcomeTitle(outcome) {
  switch (outcome) {
    case OUTCOME.PLANNED: return 'Planned';
    case OUTCOME.PUBLISHED: return 'Published';
    case OUTCOME.ENDED: return 'Ended';
    case OUTCOME.SUBSCRIBED: return 'Subscribed';
    default: return String(outcome ?? '');
  }
}

// Okabe-Ito colours (distinguishable with the common colour-vision deficiencies); each state
// also has its own outline pattern, so colour is never the only cue.
export const STYLES = {
  Accepted: { colour: '#0072B2', dash: [1, 0], label: 'Ours: Accepted' },
  Activated: { colour: '#009E73', dash: [1, 0], label: 'Ours: Activated' },
  Nonconforming: { colour: '#D55E00', dash: [4, 2], label: 'Ours: Nonconforming' },
  Contingent: { colour: '#CC79A7', dash: [1, 1.5], label: 'Ours: Contingent' },
  other: { colour: '#E69F00', dash: [3, 1.5], label: "Others' operations (details)" },
  reference: { colour: '#999999', dash: [1, 2], label: "Others' operations (DSS reference only)" },
  constraint: { colour: '#000000', dash: [2, 1], label: 'Restricted zones (constraints)' },
  subscription: { colour: '#56B4E9', dash: [0.5, 1.5], label: 'Our subscriptions' },
  isa: { colour: '#F0E442', dash: [2, 2], label: 'Remote ID service areas (ISAs)' },
};

// The style key of an entity. On the DSS's map every operation is someone else's reference,
// so there they are told apart by state.
export function styleKey(entity, mode = 'participant') {
  switch (entity.kind) {
    case 'own_intent':
      return STYLES[entity.state] ? entity.state : 'Accepted';
    case 'other_intent':
      if (mode === 'dss') return STYLES[entity.state] ? entity.state : 'reference';
      return entity.details ? 'other' : 'reference';
    case 'own_constraint':
    case 'constraint':
      return 'constraint';
    case 'identification_service_area':
      return 'isa';
    default:
      return 'subscription';
  }
}

// Whether a volume is active at `t` (milliseconds since the epoch); unbounded ends are open.
export function activeAt(volume, t) {
  const start = volume.start ? Date.parse(volume.start) : -Infinity;
  const end = volume.end ? Date.parse(volume.end) : Infinity;
  return start <= t && t < end;
}

// Whether a volume is live at some time of the window [t, t + windowMs) (at `t` for a window
// of 0): a flight starting in five minutes shows in a one-hour window from now.
export function activeIn(volume, t, windowMs = 0) {
  if (!(windowMs > 0)) return activeAt(volume, t);
  const start = volume.start ? Date.parse(volume.start) : -Infinity;
  const end = volume.end ? Date.parse(volume.end) : Infinity;
  return start < t + windowMs && t < end;
}

// GeoJSON features of every volume active at `t`. `highlight` is a set of `id#index` keys
// (conflicting volumes) drawn with a heavy outline.
export function features(entities, t, highlight = new Set(), mode = 'participant', windowMs = 0) {
  const out = [];
  for (const e of entities) {
    const key = styleKey(e, mode);
    for (const v of e.volumes) {
      if (!activeIn(v, t, windowMs)) continue;
      out.push({
        type: 'Feature',
        id: out.length,
        geometry: { type: 'Polygon', coordinates: [v.outline] },
        properties: {
          entity: e.id,
          volume: v.index,
          kind: e.kind,
          style: key,
          colour: STYLES[key].colour,
          lower: v.lower_m ?? 0,
          upper: v.upper_m ?? 600,
          highlighted: highlight.has(`${e.id}#${v.index}`),
          outlineOnly: e.kind === 'subscription',
        },
      });
    }
  }
  return { type: 'FeatureCollection', features: out };
}

// Bounds `[[west, south], [east, north]]` of all volumes, or null when there are none.
export function bounds(entities) {
  let w = Infinity, s = Infinity, e = -Infinity, n = -Infinity;
  for (const x of entities) {
    for (const v of x.volumes) {
      for (const [lng, lat] of v.outline) {
        w = Math.min(w, lng); e = Math.max(e, lng); s = Math.min(s, lat); n = Math.max(n, lat);
      }
    }
  }
  return Number.isFinite(w) ? [[w, s], [e, n]] : null;
}

const M_PER_DEG_LAT = 111_320;

// A circle as a closed ring (for the drawing preview; the participant plans the exact circle).
export function circleRing([lng, lat], radiusM, points = 64) {
  const ring = [];
  const mPerDegLng = M_PER_DEG_LAT * Math.cos((lat * Math.PI) / 180);
  for (let i = 0; i <= points; i++) {
    const a = (2 * Math.PI * (i % points)) / points;
    ring.push([lng + (radiusM * Math.sin(a)) / mPerDegLng, lat + (radiusM * Math.cos(a)) / M_PER_DEG_LAT]);
  }
  return ring;
}

// Distance in metres between two nearby points (equirectangular; for drawing only).
export function distanceM([lng1, lat1], [lng2, lat2]) {
  const mPerDegLng = M_PER_DEG_LAT * Math.cos((((lat1 + lat2) / 2) * Math.PI) / 180);
  return Math.hypot((lng2 - lng1) * mPerDegLng, (lat2 - lat1) * M_PER_DEG_LAT);
}

// The operator interface's flight request for a drawn shape.
export function flightRequest(shape, form) {
  const footprint =
    shape.type === 'circle'
      ? { type: 'Circle', center: shape.center, radius_m: shape.radiusM }
      : { type: 'Polygon', coordinates: [shape.vertices] };
  return {
    altitude_reference: form.altitudeReference ?? 'W84',
    volumes: [
      {
        footprint,
        altitude_lower_m: form.lowerM,
        altitude_upper_m: form.upperM,
        start: new Date(form.startMs).toISOString(),
        end: new Date(form.endMs).toISOString(),
      },
    ],
    priority: form.priority,
  };
}

// The request with a proposal applied: every volume later by `shift_start_s`, or moved by
// `altitude_offset_m`.
export function applyProposal(request, proposal) {
  const shift = (proposal.shift_start_s ?? 0) * 1000;
  const dz = proposal.altitude_offset_m ?? 0;
  return {
    ...request,
    volumes: request.volumes.map((v) => ({
      ...v,
      altitude_lower_m: v.altitude_lower_m + dz,
      altitude_upper_m: v.altitude_upper_m + dz,
      start: new Date(Date.parse(v.start) + shift).toISOString(),
      end: new Date(Date.parse(v.end) + shift).toISOString(),
    })),
  };
}

const kindText = { operational_intent: 'operation', constraint: 'restricted zone', unverifiable: 'unverifiable operation' };

// One line per conflict of a refused plan.
export function explain(conflict) {
  const band = conflict.overlap_altitude_m
    ? `, ${Math.round(conflict.overlap_altitude_m[0])}-${Math.round(conflict.overlap_altitude_m[1])} m`
    : '';
  const theirs = conflict.their_volume === null || conflict.their_volume === undefined ? '' : ` volume ${conflict.their_volume}`;
  return (
    `Your volume ${conflict.my_volume} meets ${kindText[conflict.kind] ?? conflict.kind} ${conflict.id}${theirs} ` +
    `of ${conflict.manager}${conflict.priority === null || conflict.priority === undefined ? '' : ` (priority ${conflict.priority})`}: ` +
    `${shortTime(conflict.overlap_start)} to ${shortTime(conflict.overlap_end)}${band}. ${conflict.reason}.`
  );
}

// The proposal as a sentence.
export function proposalText(p) {
  if (p.shift_start_s !== null && p.shift_start_s !== undefined) {
    return `Start ${Math.round(p.shift_start_s / 60)} min (${p.shift_start_s} s) later`;
  }
  if (p.altitude_offset_m !== null && p.altitude_offset_m !== undefined) {
    const band = p.altitude_band_m ? ` (${Math.round(p.altitude_band_m[0])}-${Math.round(p.altitude_band_m[1])} m)` : '';
    return `Move ${p.altitude_offset_m > 0 ? 'up' : 'down'} ${Math.abs(Math.round(p.altitude_offset_m))} m${band}`;
  }
  return 'No change found within the search horizon';
}

// `HH:MM:SS` UTC of an RFC 3339 time, or the text itself when it is not one.
export function shortTime(text) {
  const t = Date.parse(text);
  return Number.isFinite(t) ? new Date(t).toISOString().slice(11, 19) + 'Z' : String(text ?? '');
}

// The colour of a live flight: its operation's state's for ours, off-nominal states' for
// others' (the only ones whose positions others serve), else others' colour.
export function flightColour(flight) {
  if (STYLES[flight.state] && (flight.own || flight.state === 'Nonconforming' || flight.state === 'Contingent')) {
    return STYLES[flight.state].colour;
  }
  return STYLES.other.colour;
}

// The flights after a `position` event from the live feed: the flight moves to the new position
// (a newer one only), its old position joins its trail (at most `maxTrail` points kept).
export function movedFlight(flights, event, viewer, maxTrail = 300) {
  const p = event.position;
  if (!p || !event.entity) return flights;
  const out = flights.filter((f) => f.id !== event.entity);
  const old = flights.find((f) => f.id === event.entity);
  if (old && Date.parse(old.time) > Date.parse(p.time)) return flights;
  const trail = old ? [...old.trail, old.position].slice(-maxTrail) : [];
  out.push({
    id: event.entity,
    manager: event.manager ?? old?.manager ?? '',
    own: (event.manager ?? old?.manager) === viewer,
    state: event.state && event.state !== 'off-nominal' ? event.state : (old?.state ?? null),
    position: [p.lng, p.lat],
    alt_m: p.alt_m,
    time: p.time,
    trail,
  });
  return out;
}

// GeoJSON of live flights: a point at each latest position, a line along each trail.
export function flightFeatures(flights) {
  const out = [];
  for (const f of flights ?? []) {
    const colour = flightColour(f);
    if (f.trail?.length) {
      out.push({
        type: 'Feature',
        properties: { id: f.id, colour, kind: 'trail' },
        geometry: { type: 'LineString', coordinates: [...f.trail, f.position] },
      });
    }
    out.push({
      type: 'Feature',
      properties: {
        id: f.id, colour, kind: 'position', own: Boolean(f.own), state: f.state ?? '',
        label: `${f.manager} · ${Math.round(f.alt_m)} m · ${shortTime(f.time)}`,
      },
      geometry: { type: 'Point', coordinates: f.position },
    });
  }
  return { type: 'FeatureCollection', features: out };
}

// Remote ID traffic (`GET /operator/rid/flights`): a point per flight, a box per cluster.
export const RID_COLOUR = '#7B3294';

export function ridFeatures(display) {
  const out = [];
  for (const f of display?.flights ?? []) {
    out.push({
      type: 'Feature',
      properties: {
        kind: 'rid-flight', id: f.id, provider: f.provider,
        label: `${f.provider} · ${String(f.id).slice(0, 8)} · ${Math.round(f.alt_m)} m · ${Math.round(f.age_s)} s ago`,
      },
      geometry: { type: 'Point', coordinates: [f.lng, f.lat] },
    });
  }
  for (const c of display?.clusters ?? []) {
    const [s, w, n, e] = c.bounds;
    out.push({
      type: 'Feature',
      properties: { kind: 'rid-cluster', count: c.count },
      geometry: { type: 'Polygon', coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] },
    });
  }
  return { type: 'FeatureCollection', features: out };
}

// One line on what the Remote ID display shows, and which providers failed.
export function ridSummary(display) {
  if (!display) return '';
  const flights = display.flights?.length ?? 0;
  const clustered = (display.clusters ?? []).reduce((n, c) => n + c.count, 0);
  const failing = (display.providers ?? []).filter((p) => p.error).map((p) => `${p.provider}: ${p.error}`);
  const shown = display.clusters?.length
    ? `${clustered} Remote ID flights in ${display.clusters.length} clusters (zoom in for each)`
    : `${flights} Remote ID flights`;
  return failing.length ? `${shown}; not shown: ${failing.join('; ')}` : shown;
}

// ---- basemap ----

// The sources and layers drawn under the airspace for `/map/basemap`'s answer (`info`), besides
// the offline land and borders that are always there (under the tiles, and alone when the tiles
// cannot be fetched). `origin` makes a path on this server (a PMTiles archive) absolute.
export function basemapStyle(info, origin) {
  if (!info || !info.tiles || (info.kind !== 'raster' && info.kind !== 'vector')) return { sources: {}, layers: [] };
  const url = info.tiles.startsWith('/') ? `${origin}${info.tiles}` : info.tiles;
  const source = {
    type: info.kind,
    tiles: [url],
    minzoom: info.min_zoom ?? 0,
    maxzoom: info.max_zoom ?? 22,
    ...(info.kind === 'raster' ? { tileSize: 256 } : {}),
    ...(info.attribution ? { attribution: info.attribution } : {}),
  };
  if (info.kind === 'raster') {
    return { sources: { tiles: source }, layers: [{ id: 'tiles', type: 'raster', source: 'tiles' }] };
  }
  // Vector tiles: a plain style for both common schemas (OpenMapTiles and Protomaps name their
  // layers differently; a layer the tiles lack simply draws nothing). No text: labels need
  // glyphs this offline page does not carry.
  const fill = (id, layer, colour) => ({ id: `tiles-${id}`, type: 'fill', source: 'tiles', 'source-layer': layer, paint: { 'fill-color': colour } });
  const line = (id, layer, colour, width) => ({ id: `tiles-${id}`, type: 'line', source: 'tiles', 'source-layer': layer, paint: { 'line-color': colour, 'line-width': width } });
  return {
    sources: { tiles: source },
    layers: [
      fill('earth', 'earth', '#f5f2ea'),
      fill('landcover', 'landcover', '#e3ecd6'),
      fill('landuse', 'landuse', '#ebe6dc'),
      fill('park', 'park', '#d8e8c8'),
      fill('water', 'water', '#b9d3e3'),
      fill('building', 'building', '#d9d2c6'),
      fill('buildings', 'buildings', '#d9d2c6'),
      line('transportation', 'transportation', '#ffffff', 1.5),
      line('roads', 'roads', '#ffffff', 1.5),
      line('boundary', 'boundary', '#8c8c8c', 1),
      line('boundaries', 'boundaries', '#8c8c8c', 1),
    ],
  };
}

// The text in the map's corner saying what the basemap is.
export function basemapLabel(info) {
  return `Basemap: ${info?.label ?? 'Natural Earth land and borders (offline)'}`;
}

// ---- labels on shapes ----

// One label per operation or zone with a volume shown (at the time and window chosen): its
// manager and state (or kind), placed at the middle of the first such volume's outline.
// Subscriptions (large outlines around the rest) are not labelled. At most `max`, so a crowded
// view stays readable (the rest are told apart by their outlines).
export function labels(entities, t, mode = 'participant', windowMs = 0, max = 150) {
  const out = [];
  for (const e of entities) {
    if (out.length >= max) break;
    if (e.kind === 'subscription') continue;
    const v = e.volumes.find((x) => activeIn(x, t, windowMs) && (x.circle || x.outline.length));
    if (!v) continue;
    const at = v.circle ? v.circle.center : ringMiddle(v.outline);
    const what = e.state ?? KIND_WORDS[e.kind] ?? e.kind;
    out.push({ id: e.id, lngLat: at, text: `${e.manager} · ${what}`, style: styleKey(e, mode) });
  }
  return out;
}

const KIND_WORDS = {
  constraint: 'restricted zone',
  own_constraint: 'restricted zone',
  identification_service_area: 'Remote ID area',
};

// The middle of a ring's bounding box (a label's place; exact enough to point at a shape).
function ringMiddle(ring) {
  const [[w, s], [e, n]] = bounds([{ volumes: [{ outline: ring }] }]);
  return [(w + e) / 2, (s + n) / 2];
}
