// Builds the map's third-party assets (MapLibre GL JS, the Natural Earth basemap, their
// licences) into the directory given as the first argument (the committed copy lives in
// crates/map/assets, embedded by the `map` crate beside our own page from src/). Reproducible: the
// same package-lock.json gives the same bytes, so `scripts/test.sh` rebuilds into a temporary
// directory and compares.
//
//   npm ci && npm run build        (writes ../assets)
//   node build.mjs /tmp/out        (writes elsewhere)

import { mkdirSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { feature, mesh } from 'topojson-client';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node build.mjs <output directory>');
  process.exit(2);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const modules = join(here, 'node_modules');
const maplibre = join(modules, 'maplibre-gl', 'dist');
// MapLibre loads its worker from the file beside its main module.
for (const f of ['maplibre-gl.mjs', 'maplibre-gl-worker.mjs', 'maplibre-gl.css']) {
  copyFileSync(join(maplibre, f), join(out, f));
}

// The basemap: Natural Earth 1:50m land and country borders, from world-atlas' TopoJSON,
// converted once to GeoJSON with coordinates rounded to 0.001 degree (about 100 m).
const round = (x) => Math.round(x * 1000) / 1000;
function roundCoords(c) {
  return typeof c[0] === 'number' ? [round(c[0]), round(c[1])] : c.map(roundCoords);
}
function rounded(geojson) {
  const strip = (f) => ({ type: 'Feature', properties: {}, geometry: { type: f.geometry.type, coordinates: roundCoords(f.geometry.coordinates) } });
  if (geojson.type === 'FeatureCollection') {
    return { type: 'FeatureCollection', features: geojson.features.filter((f) => f.geometry).map(strip) };
  }
  return { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: { type: geojson.type, coordinates: roundCoords(geojson.coordinates) } }] };
}
const countries = JSON.parse(readFileSync(join(modules, 'world-atlas', 'countries-50m.json'), 'utf8'));
const land = rounded(feature(countries, countries.objects.land));
const borders = rounded(mesh(countries, countries.objects.countries, (a, b) => a !== b));
writeFileSync(join(out, 'basemap.json'), JSON.stringify({ land, borders }));

// Our own page (src/) needs no build: the `map` crate embeds it as written.

const licenses = [
  ['maplibre-gl', join(modules, 'maplibre-gl', 'LICENSE.txt')],
  ['world-atlas (Natural Earth data: public domain)', join(modules, 'world-atlas', 'LICENSE')],
];
writeFileSync(
  join(out, 'THIRD-PARTY-LICENSES.txt'),
  licenses.map(([name, file]) => `==== ${name} ====\n\n${readFileSync(file, 'utf8')}\n`).join('\n'),
);
console.log(`map assets written to ${out}`);
