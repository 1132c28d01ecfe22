// The map page. One file of plain DOM code around MapLibre; the pure parts live in view.js.
// Everything shown comes from a peer or the DSS and is untrusted: it is only ever written with
// textContent, never as HTML.

import * as maplibregl from '/map/assets/maplibre-gl.mjs';
import {
  OUTCOME, STYLES, features, bounds, circleRing, distanceM, flightRequest, applyProposal, explain, proposalText, shortTime,
  outcomeTitle, flightFeatures, movedFlight, ridFeatures, ridSummary, RID_COLOUR, basemapStyle, basemapLabel, labels,
} from '/map/assets/view.js';

// The DSS serves the page at /map (read-only); a participant at / on its operator listener.
const MODE = location.pathname.startsWith('/map') ? 'dss' : 'participant';
const API = MODE === 'dss'
  ? { view: '/map/data', events: null }
  : { view: '/operator/map', events: '/operator/events' };
const TOKEN_KEY = `deconflict-token-${MODE}`;
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  view: null,
  selected: null,
  highlight: new Set(),
  threeD: false,
  drawing: null, // { type: 'polygon', vertices } or { type: 'circle', center, radiusM }
  drawMode: null, // 'polygon' | 'circle' | null
  lastRequest: null,
  lastProposal: null,
  layers: { own: true, others: true, constraints: true, subscriptions: true, isas: true, rid: true },
  ridUnavailable: false,
};
let map = null;

// ---- network ----

class HttpError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  // A body that is not JSON (or none) reads as null.
  const json = await resp.json().catch(() => null);
  if (resp.status === 401) {
    logout(`Signed out: ${json?.message ?? 'the token was not accepted'}`);
    throw new HttpError(401, json?.message ?? 'unauthenticated', json);
  }
  // A refused plan (409) carries its explanation: the caller reads it.
  if (!resp.ok && !(resp.status === 409 && json?.outcome === OUTCOME.REFUSED)) {
    throw new HttpError(resp.status, json?.message ?? `${resp.status} ${resp.statusText}`, json);
  }
  return json;
}

// The view's address. The DSS answers for a box: the map's, or before the map exists a small
// one around the position in the address's `#zoom/lat/lng` (MapLibre's hash).
function viewUrl() {
  if (MODE !== 'dss') return API.view;
  let box;
  if (map) {
    const b = map.getBounds();
    box = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
  } else {
    const [, lat, lng] = hashPosition() ?? [12, 47, 8];
    box = [lng - 0.05, lat - 0.05, lng + 0.05, lat + 0.05];
  }
  const [w, s, e, n] = [Math.max(-180, box[0]), Math.max(-85, box[1]), Math.min(180, box[2]), Math.min(85, box[3])];
  return `${API.view}?bbox=${[w, s, e, n].map((v) => v.toFixed(5)).join(',')}`;
}

function hashPosition() {
  const parts = location.hash.slice(1).split('/').map(Number);
  return parts.length >= 3 && parts.slice(0, 3).every(Number.isFinite) ? parts.slice(0, 3) : null;
}

// ---- login ----

function showLogin(message) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-what').textContent = MODE === 'dss'
    ? 'Read-only view of the references this DSS holds. Sign in with a token carrying the map scope.'
    : "This participant's operations and the shared airspace. Sign in with an operator token.";
  $('login-error').textContent = message ?? '';
  $('token').focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  stopEvents();
  stopTimers();
  showLogin(message);
}

async function login(token) {
  state.token = token.trim();
  try {
    const view = await call('GET', viewUrl());
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('login').hidden = true;
    $('app').hidden = false;
    startApp(view);
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(`Not signed in: ${e.message}`);
  }
}

// ---- the map ----

function entitiesShown() {
  const v = state.view;
  if (!v) return [];
  return v.entities.filter((e) => {
    if (e.kind === 'own_intent') return state.layers.own;
    if (e.kind === 'other_intent') return state.layers.others;
    if (e.kind === 'constraint' || e.kind === 'own_constraint') return state.layers.constraints;
    if (e.kind === 'identification_service_area') return state.layers.isas;
    return state.layers.subscriptions;
  });
}

function selectedTime() {
  return Date.now() + Number($('time').value) * 60_000;
}

// The window shown from the selected time, in milliseconds (0: that instant only).
function selectedWindow() {
  return Number($('window').value) * 60_000;
}

function redraw() {
  if (!map || !map.getSource('entities')) return;
  map.getSource('entities').setData(features(entitiesShown(), selectedTime(), state.highlight, MODE, selectedWindow()));
  const minutes = Number($('time').value);
  const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
  const from = minutes === 0 ? 'now' : `now + ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  const span = selectedWindow() > 0 ? `${hhmm(selectedTime())}Z to ${hhmm(selectedTime() + selectedWindow())}Z` : `${hhmm(selectedTime())}Z`;
  $('time-label').textContent = `${from} (${span})`;
  drawDraft();
  drawFlights();
  drawLabels();
}

// Labels on shapes (manager and state): DOM markers, since text drawn by the map needs glyph
// files this offline page does not carry. Kept by entity id, moved or removed as the view changes.
const shapeLabels = new Map();
function drawLabels() {
  const wanted = labels(entitiesShown(), selectedTime(), MODE, selectedWindow());
  const keep = new Set(wanted.map((l) => l.id));
  for (const [id, marker] of shapeLabels) {
    if (!keep.has(id)) {
      marker.remove();
      shapeLabels.delete(id);
    }
  }
  for (const l of wanted) {
    let marker = shapeLabels.get(l.id);
    if (!marker) {
      const node = el('div', l.text, { class: 'shape-label', 'data-entity': l.id });
      marker = new maplibregl.Marker({ element: node, anchor: 'center' }).setLngLat(l.lngLat).addTo(map);
      shapeLabels.set(l.id, marker);
    } else {
      marker.setLngLat(l.lngLat);
      marker.getElement().textContent = l.text;
    }
  }
}

// Live flights: ours as their aircraft report, others' off-nominal ones as polled.
function drawFlights() {
  if (!map || !map.getSource('flights')) return;
  map.getSource('flights').setData(flightFeatures(state.view?.flights ?? []));
}

function drawDraft() {
  const d = state.drawing;
  let ring = [];
  if (d?.type === 'polygon') ring = d.vertices.length ? [...d.vertices, d.vertices[0]] : [];
  if (d?.type === 'circle' && d.radiusM) ring = circleRing(d.center, d.radiusM);
  if (d?.type === 'circle' && !d.radiusM) ring = [d.center];
  const data = ring.length >= 4
    ? { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [ring] } }] }
    : { type: 'FeatureCollection', features: ring.map((p) => ({ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: p } })) };
  map.getSource('draft').setData(data);
}

const STYLE_KEYS = Object.keys(STYLES);
const CLICKABLE = ['entity-fill', 'entity-extrusion', ...STYLE_KEYS.map((k) => `entity-line-${k}`)];

function buildMap(basemap, basemapInfo) {
  const empty = { type: 'FeatureCollection', features: [] };
  const tiles = basemapStyle(basemapInfo, location.origin);
  $('basemap-label').textContent = basemapLabel(basemapInfo);
  const [zoom, lat, lng] = hashPosition() ?? [MODE === 'dss' ? 2 : 3, 47, 8];
  map = new maplibregl.Map({
    container: 'map',
    center: [lng, lat],
    zoom,
    hash: true,
    maxPitch: 75,
    attributionControl: {
      customAttribution: tiles.layers.length ? 'MapLibre' : 'Basemap: Natural Earth (public domain) · MapLibre',
    },
    style: {
      version: 8,
      sources: {
        ...tiles.sources,
        land: { type: 'geojson', data: basemap.land },
        borders: { type: 'geojson', data: basemap.borders },
        entities: { type: 'geojson', data: empty },
        draft: { type: 'geojson', data: empty },
        flights: { type: 'geojson', data: empty },
        rid: { type: 'geojson', data: empty },
      },
      layers: [
        { id: 'sea', type: 'background', paint: { 'background-color': '#dce8f0' } },
        { id: 'land', type: 'fill', source: 'land', paint: { 'fill-color': '#f5f2ea' } },
        ...tiles.layers,
        { id: 'borders', type: 'line', source: 'borders', paint: { 'line-color': '#8c8c8c', 'line-width': 1 } },
        {
          id: 'entity-fill', type: 'fill', source: 'entities', filter: ['!', ['get', 'outlineOnly']],
          paint: { 'fill-color': ['get', 'colour'], 'fill-opacity': 0.22 },
        },
        {
          id: 'entity-extrusion', type: 'fill-extrusion', source: 'entities', filter: ['!', ['get', 'outlineOnly']],
          layout: { visibility: 'none' },
          paint: {
            'fill-extrusion-color': ['get', 'colour'],
            'fill-extrusion-height': ['get', 'upper'],
            'fill-extrusion-base': ['get', 'lower'],
            'fill-extrusion-opacity': 0.55,
          },
        },
        ...STYLE_KEYS.map((k) => ({
          id: `entity-line-${k}`, type: 'line', source: 'entities', filter: ['==', ['get', 'style'], k],
          paint: { 'line-color': STYLES[k].colour, 'line-width': 2.5, 'line-dasharray': STYLES[k].dash },
        })),
        {
          id: 'highlight-halo', type: 'line', source: 'entities', filter: ['get', 'highlighted'],
          paint: { 'line-color': '#ffffff', 'line-width': 9 },
        },
        {
          id: 'highlight', type: 'line', source: 'entities', filter: ['get', 'highlighted'],
          paint: { 'line-color': '#000000', 'line-width': 5, 'line-dasharray': [2, 1] },
        },
        {
          id: 'flight-trail', type: 'line', source: 'flights', filter: ['==', ['get', 'kind'], 'trail'],
          paint: { 'line-color': ['get', 'colour'], 'line-width': 2, 'line-opacity': 0.8 },
        },
        {
          id: 'flight-position', type: 'circle', source: 'flights', filter: ['==', ['get', 'kind'], 'position'],
          paint: { 'circle-radius': 6, 'circle-color': ['get', 'colour'], 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2 },
        },
        {
          id: 'rid-cluster', type: 'fill', source: 'rid', filter: ['==', ['get', 'kind'], 'rid-cluster'],
          paint: { 'fill-color': RID_COLOUR, 'fill-opacity': 0.18, 'fill-outline-color': RID_COLOUR },
        },
        {
          id: 'rid-flight', type: 'circle', source: 'rid', filter: ['==', ['get', 'kind'], 'rid-flight'],
          paint: { 'circle-radius': 5, 'circle-color': RID_COLOUR, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1.5 },
        },
        { id: 'draft-fill', type: 'fill', source: 'draft', paint: { 'fill-color': '#000000', 'fill-opacity': 0.08 } },
        { id: 'draft-line', type: 'line', source: 'draft', paint: { 'line-color': '#000000', 'line-width': 2, 'line-dasharray': [1, 1] } },
        { id: 'draft-points', type: 'circle', source: 'draft', filter: ['==', ['geometry-type'], 'Point'], paint: { 'circle-radius': 4, 'circle-color': '#000000' } },
      ],
    },
  });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: true }));
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }));
  map.doubleClickZoom.disable();
  map.on('click', onMapClick);
  // The DSS's view is of the box on screen.
  if (MODE === 'dss') map.on('moveend', refreshSoon);
  map.on('dblclick', () => { if (state.drawMode === 'polygon') finishDrawing(); });
  for (const layer of CLICKABLE) {
    map.on('mouseenter', layer, () => { if (!state.drawMode) map.getCanvas().style.cursor = 'pointer'; });
    map.on('mouseleave', layer, () => { map.getCanvas().style.cursor = state.drawMode ? 'crosshair' : ''; });
  }
  return new Promise((resolve) => map.on('load', resolve));
}

function fitAll() {
  const b = bounds(state.view?.entities ?? []);
  if (b) map.fitBounds(b, { padding: 60, maxZoom: 15, duration: 0 });
}

function set3d(on) {
  state.threeD = on;
  $('toggle-3d').setAttribute('aria-pressed', String(on));
  $('toggle-3d').textContent = on ? '2D' : '3D';
  map.setLayoutProperty('entity-extrusion', 'visibility', on ? 'visible' : 'none');
  map.setLayoutProperty('entity-fill', 'visibility', on ? 'none' : 'visible');
  map.easeTo({ pitch: on ? 60 : 0, duration: 0 });
}

// Remote ID traffic in the view on screen, from every service provider (views up to 7 km).
async function refreshRid() {
  if (MODE !== 'participant' || !map || !map.getSource('rid')) return;
  const empty = { type: 'FeatureCollection', features: [] };
  if (!state.layers.rid || state.ridUnavailable) {
    map.getSource('rid').setData(empty);
    return;
  }
  const b = map.getBounds();
  const [s, w, n, e] = [b.getSouth(), b.getWest(), b.getNorth(), b.getEast()];
  if (distanceM([w, s], [e, n]) > 7000) {
    map.getSource('rid').setData(empty);
    $('rid-status').textContent = 'zoom in to see Remote ID traffic (views up to 7 km across)';
    return;
  }
  try {
    const display = await call('GET', `/operator/rid/flights?view=${s},${w},${n},${e}`);
    map.getSource('rid').setData(ridFeatures(display));
    $('rid-status').textContent = ridSummary(display);
  } catch (err) {
    // 412: this participant is not a display provider; say so once and stop asking.
    if (err.status === 412) state.ridUnavailable = true;
    map.getSource('rid').setData(empty);
    $('rid-status').textContent = `Remote ID traffic not shown: ${err.message}`;
  }
}

// ---- selection and details ----

function onMapClick(e) {
  const p = [e.lngLat.lng, e.lngLat.lat];
  if (state.drawMode === 'polygon') {
    state.drawing.vertices.push(p);
    $('draw-finish').disabled = state.drawing.vertices.length < 3;
    drawDraft();
    return;
  }
  if (state.drawMode === 'circle') {
    if (!state.drawing) {
      state.drawing = { type: 'circle', center: p, radiusM: 0 };
    } else {
      state.drawing.radiusM = Math.max(1, Math.round(distanceM(state.drawing.center, p)));
      finishDrawing();
    }
    drawDraft();
    return;
  }
  const hits = map.queryRenderedFeatures(e.point, { layers: CLICKABLE.filter((l) => map.getLayer(l)) });
  const hit = hits[0];
  state.selected = hit ? hit.properties.entity : null;
  showDetails();
}

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const KIND_TEXT = {
  own_intent: 'Our operation',
  other_intent: "Another manager's operation",
  own_constraint: 'Our restricted zone',
  constraint: 'Restricted zone',
  subscription: 'Subscription',
  identification_service_area: 'Remote ID service area (ISA)',
};

function showDetails() {
  const body = $('details-body');
  body.replaceChildren();
  const e = state.view?.entities.find((x) => x.id === state.selected);
  if (!e) {
    body.append(el('p', 'Click a shape on the map.', { class: 'muted' }));
    return;
  }
  const dl = el('dl');
  const rows = [
    ['Kind', KIND_TEXT[e.kind] ?? e.kind],
    ['ID', e.id],
    ['Manager', e.manager],
    ['State', e.state],
    ['Priority', e.priority],
    ['Version', e.version],
    ['OVN', e.ovn],
    ['USS', e.uss_base_url],
    ['Details', e.details ? 'obtained' : 'DSS reference only'],
  ];
  for (const [k, v] of rows) {
    if (v === null || v === undefined || v === '') continue;
    dl.append(el('dt', k), el('dd', v));
  }
  body.append(dl);
  const list = el('ol', null, { class: 'volumes', start: '0' });
  for (const v of e.volumes) {
    // What the wire carries: heights above the WGS84 ellipsoid, said so.
    const band = `${v.lower_m ?? '-'}-${v.upper_m ?? '-'} m W84`;
    const shape = v.circle ? `circle ${Math.round(v.circle.radius_m)} m` : `polygon of ${v.outline.length - 1} vertices`;
    list.append(el('li', `${v.off_nominal ? 'off-nominal ' : ''}${shape}, ${band}, ${shortTime(v.start)} to ${shortTime(v.end)}`));
  }
  body.append(list);
  if (MODE === 'participant' && e.kind === 'own_intent') {
    const actions = el('div', null, { class: 'row actions' });
    const action = (label, path, enabled = true) => {
      const b = el('button', label, { type: 'button', 'data-action': path });
      b.disabled = !enabled;
      b.addEventListener('click', () => act(e, path));
      actions.append(b);
    };
    action('Activate', 'activate', e.state === 'Accepted');
    action('Modify', 'modify');
    action('Mark Nonconforming', 'nonconforming', e.state === 'Activated' || e.state === 'Contingent');
    action('End', 'end');
    body.append(actions);
    body.append(el('p', 'Modify re-plans with the form\'s band, times and priority, and the drawn shape if there is one.', { class: 'muted' }));
  }
}

async function act(entity, action) {
  const out = $('plan-result');
  try {
    let result;
    if (action === 'modify') {
      const request = modifyRequest(entity);
      if (!request) return;
      result = await call('POST', `/operator/intents/${encodeURIComponent(entity.id)}/modify`, request);
      state.lastRequest = { ...request, modifies: entity.id };
    } else {
      result = await call('POST', `/operator/intents/${encodeURIComponent(entity.id)}/${action}`);
    }
    showOutcome(result);
  } catch (e) {
    showError(out, e);
  }
  await refresh();
}

function formValues() {
  const num = (id) => Number($(id).value);
  const now = Date.now();
  const values = {
    altitudeReference: $('altref').value,
    lowerM: num('lower'), upperM: num('upper'), priority: Math.trunc(num('priority')),
    startMs: now + num('start') * 60_000, endMs: now + num('end') * 60_000,
  };
  // An absolute date and time, when given, wins over "minutes from now" (the browser's time zone).
  for (const [field, key] of [['start-at', 'startMs'], ['end-at', 'endMs']]) {
    const text = $(field).value;
    if (text) {
      const at = new Date(text).getTime();
      if (!Number.isFinite(at)) throw new Error(`${field}: not a date and time`);
      values[key] = at;
    }
  }
  if (!(values.upperM > values.lowerM)) throw new Error('the upper altitude must be above the lower one');
  if (!(values.endMs > values.startMs)) throw new Error('the end must be after the start');
  return values;
}

function modifyRequest(entity) {
  const form = formValues();
  if (state.drawing && isComplete(state.drawing)) return flightRequest(state.drawing, form);
  const request = { altitude_reference: form.altitudeReference, volumes: [], priority: form.priority };
  for (const v of entity.volumes.filter((x) => !x.off_nominal)) {
    const one = flightRequest(v.circle ? { type: 'circle', center: v.circle.center, radiusM: v.circle.radius_m }
      : { type: 'polygon', vertices: v.outline.slice(0, -1) }, form);
    request.volumes.push(one.volumes[0]);
  }
  return request;
}

// ---- drawing and planning ----

function isComplete(d) {
  return d.type === 'circle' ? d.radiusM > 0 : d.vertices.length >= 3;
}

function startDrawing(kind) {
  state.drawMode = kind;
  state.drawing = kind === 'polygon' ? { type: 'polygon', vertices: [] } : null;
  $('draw-finish').disabled = true;
  $('draw-help').textContent = kind === 'polygon'
    ? 'Click the vertices on the map; double-click or Finish shape to close it.'
    : 'Click the centre, then a point on the edge.';
  map.getCanvas().style.cursor = 'crosshair';
  $('plan-fields').open = true;
  drawDraft();
}

function finishDrawing() {
  if (!state.drawing || !isComplete(state.drawing)) return;
  state.drawMode = null;
  $('draw-finish').disabled = true;
  map.getCanvas().style.cursor = '';
  const d = state.drawing;
  $('draw-help').textContent = d.type === 'circle'
    ? `Circle of ${d.radiusM} m drawn. Set the band, times and priority, then Plan.`
    : `Polygon of ${d.vertices.length} vertices drawn. Set the band, times and priority, then Plan.`;
}

function clearDrawing() {
  state.drawMode = null;
  state.drawing = null;
  state.highlight = new Set();
  $('draw-finish').disabled = true;
  $('draw-help').textContent = 'Draw a shape on the map, then set the band, times and priority.';
  map.getCanvas().style.cursor = '';
  redraw();
}

async function submitPlan(request) {
  const out = $('plan-result');
  out.replaceChildren(el('p', 'Planning...', { class: 'muted' }));
  try {
    const result = await call('POST', '/operator/plan', request);
    state.lastRequest = request;
    showOutcome(result);
  } catch (e) {
    showError(out, e);
  }
  await refresh();
}

function showError(out, e) {
  out.replaceChildren(el('p', `Failed: ${e.message}`, { class: 'error' }));
}

function showOutcome(result) {
  const out = $('plan-result');
  out.replaceChildren();
  state.highlight = new Set();
  if (result.outcome === OUTCOME.REFUSED) {
    out.append(el('p', `Refused: ${result.message}`, { class: 'refused' }));
    const list = el('ul', null, { class: 'conflicts' });
    for (const c of result.conflicts ?? []) {
      list.append(el('li', explain(c)));
      if (c.their_volume !== null && c.their_volume !== undefined) state.highlight.add(`${c.id}#${c.their_volume}`);
      else for (const e of state.view?.entities ?? []) if (e.id === c.id) for (const v of e.volumes) state.highlight.add(`${e.id}#${v.index}`);
    }
    out.append(list);
    out.scrollIntoView({ block: 'nearest' });
    if (result.proposal) {
      state.lastProposal = result.proposal;
      const hasChange = result.proposal.shift_start_s != null || result.proposal.altitude_offset_m != null;
      out.append(el('p', `Proposal: ${proposalText(result.proposal)} (re-checked with the DSS).`, { class: 'proposal' }));
      if (hasChange && state.lastRequest) {
        const b = el('button', 'Accept proposal', { type: 'button', id: 'accept-proposal' });
        b.addEventListener('click', () => acceptProposal());
        out.append(b);
      }
    }
  } else {
    const id = result.operational_intent_id ?? '';
    out.append(el('p', `${outcomeTitle(result.outcome)}: ${id} ${result.state ?? ''} (version ${result.version ?? '-'})`, { class: 'planned' }));
    for (const d of result.notified ?? []) {
      const outcome = d.sending ? 'being sent (outcomes arrive on the live feed)' : d.acknowledged ? 'acknowledged' : `FAILED ${d.detail}`;
      out.append(el('p', `notifying ${d.uss_base_url}: ${outcome}`, { class: 'muted' }));
    }
    if (id) state.selected = id;
    state.drawing = null;
  }
  redraw();
}

async function acceptProposal() {
  const request = applyProposal(state.lastRequest, state.lastProposal);
  if (state.lastRequest.modifies) {
    const out = $('plan-result');
    try {
      const { modifies, ...body } = request;
      showOutcome(await call('POST', `/operator/intents/${encodeURIComponent(modifies)}/modify`, body));
      state.lastRequest = request;
    } catch (e) {
      showError(out, e);
    }
    await refresh();
    return;
  }
  await submitPlan(request);
}

// ---- data and live feed ----

async function refresh() {
  try {
    state.view = await call('GET', viewUrl());
    $('updated').textContent = `updated ${shortTime(state.view.generated_at)}${state.view.truncated ? ' (truncated)' : ''}`;
    redraw();
    showDetails();
  } catch (e) {
    if (e.status !== 401) $('updated').textContent = `not updated: ${e.message}`;
  }
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

function feed(event) {
  const item = el('li', null, { 'data-kind': event.kind });
  item.append(el('time', shortTime(event.at)), document.createTextNode(' '), el('span', event.text));
  const list = $('feed');
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

let eventsAbort = null;
function stopEvents() {
  if (eventsAbort) eventsAbort.abort();
  eventsAbort = null;
}

// Server-sent events read with fetch (EventSource cannot send an Authorization header).
async function startEvents() {
  stopEvents();
  const abort = new AbortController();
  eventsAbort = abort;
  while (!abort.signal.aborted && state.token) {
    try {
      const resp = await fetch(API.events, {
        headers: { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' },
        signal: abort.signal,
      });
      if (resp.status === 401) { logout('Signed out: the token is no longer accepted'); return; }
      if (!resp.ok) throw new Error(`${resp.status}`);
      $('live').textContent = '(live)';
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (!data) continue;
          try {
            const event = JSON.parse(data);
            if (event.kind === 'position') {
              // Positions move a flight on the map; they do not fill the feed or reload the view.
              if (state.view) state.view.flights = movedFlight(state.view.flights ?? [], event, state.view.viewer);
              drawFlights();
              continue;
            }
            feed(event);
            refreshSoon();
          } catch {
            // Not one of our events: ignored.
          }
        }
      }
    } catch {
      if (abort.signal.aborted) return;
    }
    $('live').textContent = '(reconnecting)';
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---- start ----

function legend() {
  const list = $('legend');
  list.replaceChildren();
  // The DSS holds references only: every operation there is drawn as one.
  // ISAs are the DSS's alone (a participant's map shows no Remote ID areas yet).
  const keys = MODE === 'dss'
    ? ['Accepted', 'Activated', 'Nonconforming', 'Contingent', 'constraint', 'isa']
    : Object.keys(STYLES).filter((k) => k !== 'isa');
  for (const key of keys) {
    const s = STYLES[key];
    const swatch = el('span', null, { class: `swatch swatch-${key}` });
    swatch.style.borderColor = s.colour;
    swatch.style.backgroundColor = `${s.colour}40`;
    const label = MODE === 'dss' ? s.label.replace('Ours: ', 'Operations: ') : s.label;
    const item = el('li');
    item.append(swatch, document.createTextNode(label));
    list.append(item);
  }
}

let started = false;
let timers = [];
function stopTimers() {
  for (const t of timers) clearInterval(t);
  timers = [];
}

async function startApp(view) {
  state.view = view;
  $('viewer').textContent = view.viewer;
  $('mode').textContent = MODE === 'dss' ? 'DSS airspace (read-only)' : 'participant';
  if (MODE === 'dss') {
    $('plan').hidden = true;
    $('feed-section').hidden = true;
    // Only others' references, zones and Remote ID areas exist there.
    for (const layer of ['own', 'subscriptions']) document.querySelector(`#layers [data-layer="${layer}"]`).parentElement.hidden = true;
    document.querySelector('#layers [data-layer="others"]').nextSibling.textContent = ' Operations';
  } else {
    // A participant's map holds no Remote ID areas.
    document.querySelector('#layers [data-layer="isas"]').parentElement.hidden = true;
  }
  legend();
  // A position in the address (a reload, a shared link) wins over fitting everything.
  const positioned = hashPosition() !== null;
  if (!started) {
    started = true;
    const basemap = await (await fetch('/map/assets/basemap.json')).json();
    // What lies under the airspace (--map-tiles); the offline land and borders when unknown.
    const basemapInfo = await fetch('/map/basemap').then((r) => (r.ok ? r.json() : null)).catch(() => null);
    await buildMap(basemap, basemapInfo);
    // For the browser tests and the console: the map, the state, and selecting a shape by id.
    window.deconflict = { map, state, select: (id) => { state.selected = id; showDetails(); } };
  }
  if (MODE === 'participant' && !positioned) fitAll();
  if (MODE === 'dss') refresh();
  redraw();
  showDetails();
  // A new sign-in replaces the timers of the last one (logging out stops them).
  stopTimers();
  if (API.events) startEvents();
  else timers.push(setInterval(refresh, 5000));
  if (MODE === 'participant') {
    refreshRid();
    timers.push(setInterval(refreshRid, 2000));
  } else {
    // Remote ID traffic is a participant's (a display provider's) to show.
    document.querySelector('#layers [data-layer="rid"]').parentElement.hidden = true;
    $('rid-status').hidden = true;
  }
  timers.push(setInterval(redraw, 30_000));
  document.body.dataset.ready = 'true';
}

function wire() {
  $('login-form').addEventListener('submit', (e) => { e.preventDefault(); login($('token').value); });
  $('logout').addEventListener('click', () => logout('Signed out.'));
  $('toggle-3d').addEventListener('click', () => set3d(!state.threeD));
  $('fit').addEventListener('click', fitAll);
  $('time').addEventListener('input', redraw);
  $('window').addEventListener('change', redraw);
  for (const box of document.querySelectorAll('#layers input')) {
    box.addEventListener('change', () => {
      state.layers[box.dataset.layer] = box.checked;
      redraw();
      if (box.dataset.layer === 'rid') refreshRid();
    });
  }
  $('draw-polygon').addEventListener('click', () => startDrawing('polygon'));
  $('draw-circle').addEventListener('click', () => startDrawing('circle'));
  $('draw-finish').addEventListener('click', finishDrawing);
  $('draw-clear').addEventListener('click', clearDrawing);
  $('plan-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const out = $('plan-result');
    if (!state.drawing || !isComplete(state.drawing)) {
      out.replaceChildren(el('p', 'Draw a polygon or a circle first.', { class: 'error' }));
      return;
    }
    try {
      submitPlan(flightRequest(state.drawing, formValues()));
    } catch (err) {
      showError(out, err);
    }
  });
}

wire();
if (state.token) login(state.token);
else showLogin();
