// Unit tests of the map's pure functions (src/view.js): no browser, no network.
//
//   node --test test/view.test.mjs        (npm test)

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  OUTCOME, STYLES, activeAt, activeIn, applyProposal, bounds, circleRing, distanceM, explain, features, flightRequest,
  outcomeTitle, proposalText, shortTime, styleKey, flightColour, flightFeatures, movedFlight, ridFeatures, ridSummary,
  basemapStyle, basemapLabel, labels,
} from '../src/view.js';

const square = (west, south, side) => [[west, south], [west + side, south], [west + side, south + side], [west, south + side], [west, south]];

test('outcomes are the participant\'s snake_case names, and only refusals lack a title', () => {
  assert.deepEqual(Object.values(OUTCOME), ['planned', 'refused', 'published', 'ended', 'subscribed']);
  assert.ok(Object.isFrozen(OUTCOME));
  assert.equal(outcomeTitle(OUTCOME.PLANNED), 'Planned');
  assert.equal(outcomeTitle(OUTCOME.ENDED), 'Ended');
  assert.equal(outcomeTitle('something_new'), 'something_new');
  assert.equal(outcomeTitle(undefined), '');
});

test('each kind and state has its own style; the DSS tells operations apart by state', () => {
  assert.equal(styleKey({ kind: 'own_intent', state: 'Nonconforming' }), 'Nonconforming');
  assert.equal(styleKey({ kind: 'own_intent', state: 'Bogus' }), 'Accepted');
  assert.equal(styleKey({ kind: 'other_intent', details: {} }), 'other');
  assert.equal(styleKey({ kind: 'other_intent' }), 'reference');
  assert.equal(styleKey({ kind: 'other_intent', state: 'Activated' }, 'dss'), 'Activated');
  assert.equal(styleKey({ kind: 'other_intent', state: 'Bogus' }, 'dss'), 'reference');
  assert.equal(styleKey({ kind: 'own_constraint' }), 'constraint');
  assert.equal(styleKey({ kind: 'subscription' }), 'subscription');
  assert.equal(styleKey({ kind: 'identification_service_area' }, 'dss'), 'isa');
  // Colour is never the only cue: no two styles share both colour and dash pattern.
  const looks = Object.values(STYLES).map((s) => `${s.colour}/${s.dash.join(',')}`);
  assert.equal(new Set(looks).size, looks.length);
});

test('a volume is active from its start (included) to its end (excluded); open ends are unbounded', () => {
  const v = { start: '2026-01-01T00:00:00Z', end: '2026-01-01T01:00:00Z' };
  const t0 = Date.parse(v.start);
  const t1 = Date.parse(v.end);
  assert.equal(activeAt(v, t0 - 1), false);
  assert.equal(activeAt(v, t0), true);
  assert.equal(activeAt(v, t1 - 1), true);
  assert.equal(activeAt(v, t1), false);
  assert.equal(activeAt({}, 0), true);
  assert.equal(activeAt({ end: v.end }, -1e15), true);
});

test('a time window shows every volume live at some time of it', () => {
  const v = { start: '2026-01-01T00:05:00Z', end: '2026-01-01T00:35:00Z' };
  const now = Date.parse('2026-01-01T00:00:00Z');
  const hour = 3_600_000;
  assert.equal(activeIn(v, now, 0), false, 'not at the instant');
  assert.equal(activeIn(v, now, hour), true, 'starts five minutes into the hour');
  assert.equal(activeIn(v, now, 5 * 60_000), false, 'the window ends as it starts');
  assert.equal(activeIn(v, Date.parse(v.end), hour), false, 'over before the window');
  assert.equal(activeIn(v, Date.parse(v.end) - 1, hour), true);
});

test('features keep only the volumes active at the time, styled and highlighted', () => {
  const t = Date.parse('2026-01-01T00:30:00Z');
  const entities = [
    {
      id: 'a',
      kind: 'own_intent',
      state: 'Activated',
      volumes: [
        { index: 0, outline: square(8, 47, 0.01), start: '2026-01-01T00:00:00Z', end: '2026-01-01T01:00:00Z', lower_m: 10, upper_m: 90 },
        { index: 1, outline: square(8.1, 47, 0.01), start: '2026-01-01T02:00:00Z', end: '2026-01-01T03:00:00Z' },
      ],
    },
    { id: 's', kind: 'subscription', volumes: [{ index: 0, outline: square(7, 46, 1) }] },
  ];
  const fc = features(entities, t, new Set(['a#0']));
  assert.equal(fc.type, 'FeatureCollection');
  assert.deepEqual(fc.features.map((f) => [f.properties.entity, f.properties.volume]), [['a', 0], ['s', 0]]);
  const [a, s] = fc.features;
  assert.deepEqual([a.properties.style, a.properties.colour, a.properties.lower, a.properties.upper], ['Activated', STYLES.Activated.colour, 10, 90]);
  assert.equal(a.properties.highlighted, true);
  assert.deepEqual(a.geometry.coordinates, [square(8, 47, 0.01)]);
  // Altitudes default to the ground and 600 m; subscriptions are outlines only.
  assert.deepEqual([s.properties.lower, s.properties.upper, s.properties.outlineOnly, s.properties.highlighted], [0, 600, true, false]);
  assert.deepEqual(fc.features.map((f) => f.id), [0, 1]);
});

test('bounds cover every vertex, or are null without volumes', () => {
  assert.equal(bounds([]), null);
  assert.equal(bounds([{ volumes: [] }]), null);
  const b = bounds([{ volumes: [{ outline: square(8, 47, 0.5) }] }, { volumes: [{ outline: [[-1, 50], [2, 51]] }] }]);
  assert.deepEqual(b, [[-1, 47], [8.5, 51]]);
});

test('a drawn circle is a closed ring at its radius', () => {
  const centre = [8, 47];
  const ring = circleRing(centre, 500, 32);
  assert.equal(ring.length, 33);
  assert.deepEqual(ring[0], ring[32]);
  for (const p of ring) assert.ok(Math.abs(distanceM(centre, p) - 500) < 0.5, `${p} at ${distanceM(centre, p)} m`);
  // One degree of latitude is about 111 km.
  assert.ok(Math.abs(distanceM([8, 47], [8, 48]) - 111_320) < 1);
});

test('a drawn shape becomes the operator interface\'s request, and a proposal moves it', () => {
  const form = { lowerM: 0, upperM: 120, startMs: Date.parse('2026-01-01T00:00:00Z'), endMs: Date.parse('2026-01-01T00:20:00Z'), priority: 0 };
  const circle = flightRequest({ type: 'circle', center: [8, 47], radiusM: 300 }, form);
  assert.deepEqual(circle, {
    altitude_reference: 'W84',
    volumes: [{
      footprint: { type: 'Circle', center: [8, 47], radius_m: 300 },
      altitude_lower_m: 0,
      altitude_upper_m: 120,
      start: '2026-01-01T00:00:00.000Z',
      end: '2026-01-01T00:20:00.000Z',
    }],
    priority: 0,
  });
  assert.equal(flightRequest({ type: 'circle', center: [8, 47], radiusM: 300 }, { ...form, altitudeReference: 'MSL' }).altitude_reference, 'MSL');
  const polygon = flightRequest({ type: 'polygon', vertices: square(8, 47, 0.01) }, form);
  assert.deepEqual(polygon.volumes[0].footprint, { type: 'Polygon', coordinates: [square(8, 47, 0.01)] });

  const later = applyProposal(circle, { shift_start_s: 600 });
  assert.deepEqual([later.volumes[0].start, later.volumes[0].end], ['2026-01-01T00:10:00.000Z', '2026-01-01T00:30:00.000Z']);
  assert.equal(later.volumes[0].altitude_upper_m, 120);
  const higher = applyProposal(circle, { altitude_offset_m: 150 });
  assert.deepEqual([higher.volumes[0].altitude_lower_m, higher.volumes[0].altitude_upper_m], [150, 270]);
  assert.equal(higher.volumes[0].start, circle.volumes[0].start);
  // The request given is not changed.
  assert.equal(circle.volumes[0].altitude_lower_m, 0);
});

test('conflicts and proposals read as sentences', () => {
  const conflict = {
    my_volume: 0,
    kind: 'operational_intent',
    id: 'b1',
    their_volume: 2,
    manager: 'bravo',
    priority: 10,
    overlap_start: '2026-01-01T00:05:00Z',
    overlap_end: '2026-01-01T00:10:00.500Z',
    overlap_altitude_m: [50.4, 99.6],
    reason: 'same priority, not allowed to overlap',
  };
  assert.equal(
    explain(conflict),
    'Your volume 0 meets operation b1 volume 2 of bravo (priority 10): 00:05:00Z to 00:10:00Z, 50-100 m. same priority, not allowed to overlap.',
  );
  assert.equal(
    explain({ ...conflict, kind: 'constraint', their_volume: null, priority: null, overlap_altitude_m: null }),
    'Your volume 0 meets restricted zone b1 of bravo: 00:05:00Z to 00:10:00Z. same priority, not allowed to overlap.',
  );
  assert.equal(proposalText({ shift_start_s: 900 }), 'Start 15 min (900 s) later');
  assert.equal(proposalText({ altitude_offset_m: -30.4, altitude_band_m: [10, 40] }), 'Move down 30 m (10-40 m)');
  assert.equal(proposalText({}), 'No change found within the search horizon');
  assert.equal(shortTime('not a time'), 'not a time');
  assert.equal(shortTime(undefined), '');
});

test('a position event moves its flight, grows its bounded trail, and ignores an older one', () => {
  const event = (id, lng, time, manager = 'alpha', st = 'Activated') => ({
    kind: 'position', entity: id, manager, state: st, position: { lng, lat: 47, alt_m: 80, time },
  });
  let flights = movedFlight([], event('a', 8.0, '2027-01-01T00:00:00Z'), 'alpha', 2);
  assert.deepEqual(flights, [{ id: 'a', manager: 'alpha', own: true, state: 'Activated', position: [8.0, 47], alt_m: 80, time: '2027-01-01T00:00:00Z', trail: [] }]);
  flights = movedFlight(flights, event('a', 8.1, '2027-01-01T00:00:01Z'), 'alpha', 2);
  flights = movedFlight(flights, event('a', 8.2, '2027-01-01T00:00:02Z'), 'alpha', 2);
  flights = movedFlight(flights, event('a', 8.3, '2027-01-01T00:00:03Z'), 'alpha', 2);
  assert.deepEqual(flights[0].trail, [[8.1, 47], [8.2, 47]], 'at most two trail points kept');
  assert.deepEqual(flights[0].position, [8.3, 47]);
  const late = movedFlight(flights, event('a', 9.0, '2027-01-01T00:00:00.500Z'), 'alpha', 2);
  assert.equal(late, flights, 'an older position does not move the flight');
  // Another's off-nominal flight, as polled: its state stays the one the view gave.
  flights = movedFlight(flights, { ...event('b', 7.0, '2027-01-01T00:00:03Z', 'bravo', 'off-nominal') }, 'alpha');
  assert.equal(flights.find((f) => f.id === 'b').own, false);
  assert.equal(flights.find((f) => f.id === 'b').state, null);
});

test('flights are drawn as a point at the latest position and a line along the trail, coloured by state', () => {
  const ours = { id: 'a', manager: 'alpha', own: true, state: 'Nonconforming', position: [8.3, 47], alt_m: 80.4, time: '2027-01-01T00:00:03Z', trail: [[8.1, 47], [8.2, 47]] };
  const theirs = { id: 'b', manager: 'bravo', own: false, state: 'Contingent', position: [7, 47], alt_m: 50, time: '2027-01-01T00:00:03Z', trail: [] };
  const fc = flightFeatures([ours, theirs]);
  assert.equal(fc.features.length, 3);
  const trail = fc.features.find((f) => f.properties.kind === 'trail');
  assert.deepEqual(trail.geometry.coordinates, [[8.1, 47], [8.2, 47], [8.3, 47]]);
  assert.equal(trail.properties.colour, STYLES.Nonconforming.colour);
  const points = fc.features.filter((f) => f.properties.kind === 'position');
  assert.deepEqual(points.map((p) => p.geometry.coordinates), [[8.3, 47], [7, 47]]);
  assert.match(points[0].properties.label, /^alpha · 80 m · /);
  assert.equal(flightColour(theirs), STYLES.Contingent.colour);
  assert.equal(flightColour({ ...theirs, state: 'Activated' }), STYLES.other.colour);
  assert.deepEqual(flightFeatures(undefined), { type: 'FeatureCollection', features: [] });
});

test('Remote ID traffic: a point per flight, a box per cluster, and a summary naming failing providers', () => {
  const display = {
    flights: [{ id: 'abcdef0123', provider: 'bravo', lat: 47, lng: 8, alt_m: 61.4, time: 't', age_s: 1.6 }],
    clusters: [],
    providers: [{ provider: 'bravo', flights: 1 }, { provider: 'mallory', flights: 0, error: 'did not answer' }],
  };
  const fc = ridFeatures(display);
  assert.equal(fc.features.length, 1);
  assert.deepEqual(fc.features[0].geometry.coordinates, [8, 47]);
  assert.equal(fc.features[0].properties.label, 'bravo · abcdef01 · 61 m · 2 s ago');
  assert.equal(ridSummary(display), '1 Remote ID flights; not shown: mallory: did not answer');
  const wide = { flights: [], clusters: [{ bounds: [47, 8, 47.01, 8.02], count: 3 }], providers: [] };
  const box = ridFeatures(wide).features[0];
  assert.deepEqual(box.geometry.coordinates[0], [[8, 47], [8.02, 47], [8.02, 47.01], [8, 47.01], [8, 47]]);
  assert.equal(box.properties.count, 3);
  assert.equal(ridSummary(wide), '3 Remote ID flights in 1 clusters (zoom in for each)');
  assert.equal(ridSummary(null), '');
});

test('labels name each shown entity\'s manager and state at its middle, within the window, and are bounded', () => {
  const t = Date.parse('2026-01-01T00:30:00Z');
  const entities = [
    { id: 'a', kind: 'other_intent', manager: 'alpha', state: 'Activated', details: true, volumes: [
      { index: 0, outline: square(8, 47, 0.02), start: '2026-01-01T00:00:00Z', end: '2026-01-01T01:00:00Z' },
    ] },
    { id: 'c', kind: 'constraint', manager: 'authority', volumes: [
      { index: 0, outline: [] },
      { index: 1, outline: square(9, 46, 0.01), circle: { center: [9.005, 46.005], radius_m: 100 } },
    ] },
    { id: 's', kind: 'subscription', manager: 'bravo', volumes: [{ index: 0, outline: square(7, 45, 2) }] },
    { id: 'later', kind: 'own_intent', manager: 'bravo', state: 'Accepted', volumes: [
      { index: 0, outline: square(7, 46, 0.01), start: '2026-01-01T02:00:00Z', end: '2026-01-01T03:00:00Z' },
    ] },
  ];
  const shown = labels(entities, t);
  assert.deepEqual(shown.map((l) => [l.id, l.text, l.style]), [
    ['a', 'alpha · Activated', 'other'],
    ['c', 'authority · restricted zone', 'constraint'],
  ]);
  assert.deepEqual(shown[0].lngLat.map((x) => x.toFixed(3)), ['8.010', '47.010']);
  assert.deepEqual(shown[1].lngLat, [9.005, 46.005], 'a circle is labelled at its centre (a volume without a shape is skipped)');
  assert.deepEqual(labels(entities, t, 'participant', 3 * 3600_000).map((l) => l.id), ['a', 'c', 'later'], 'a window reaches the later flight');
  assert.equal(labels(entities, t, 'participant', 3 * 3600_000, 1).length, 1);
});

test('the basemap adds raster or vector tiles under the airspace, with absolute URLs, and says what it is', () => {
  assert.deepEqual(basemapStyle({ kind: 'natural_earth', label: 'NE' }, 'http://h'), { sources: {}, layers: [] });
  const raster = basemapStyle({ kind: 'raster', tiles: '/map/tiles/{z}/{x}/{y}', min_zoom: 0, max_zoom: 1 }, 'http://127.0.0.1:9');
  assert.deepEqual(raster.sources.tiles, { type: 'raster', tiles: ['http://127.0.0.1:9/map/tiles/{z}/{x}/{y}'], minzoom: 0, maxzoom: 1, tileSize: 256 });
  assert.deepEqual(raster.layers.map((l) => l.type), ['raster']);
  const vector = basemapStyle({ kind: 'vector', tiles: 'https://t.example/{z}/{x}/{y}.pbf', attribution: '© T' }, 'http://h');
  assert.equal(vector.sources.tiles.tiles[0], 'https://t.example/{z}/{x}/{y}.pbf');
  assert.equal(vector.sources.tiles.attribution, '© T');
  assert.ok(vector.layers.every((l) => l.source === 'tiles' && l['source-layer'] && l.type !== 'symbol'), 'no text layers (no glyphs offline)');
  assert.ok(vector.layers.some((l) => l['source-layer'] === 'water') && vector.layers.some((l) => l['source-layer'] === 'roads'));
  assert.equal(basemapLabel({ label: 'city.pmtiles' }), 'Basemap: city.pmtiles');
  assert.match(basemapLabel(null), /Natural Earth/);
});
