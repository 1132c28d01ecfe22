// Browser test of the map against a running `deconflict demo --keep-running --ready-file F`:
// headless Debian Chromium (WebGL through SwiftShader) driven by playwright-core.
//
//   node test/map.test.mjs <ready.json> <screenshot directory>
//
// Each step asserts what it needs and saves a screenshot; any failure (or an error in the
// page) exits non-zero with what was seen. Bounded: every wait has a timeout, and the whole
// run is killed after three minutes.

import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [readyFile, shots] = process.argv.slice(2);
if (!readyFile || !shots) {
  console.error('usage: node test/map.test.mjs <ready.json> <screenshot directory>');
  process.exit(2);
}
const ready = JSON.parse(readFileSync(readyFile, 'utf8'));
mkdirSync(shots, { recursive: true });
const deadline = setTimeout(() => {
  console.error('map test: still running after 180 s; giving up');
  process.exit(3);
}, 180_000);

function check(condition, what, seen) {
  if (!condition) throw new Error(`${what}${seen === undefined ? '' : `; saw: ${JSON.stringify(seen).slice(0, 2000)}`}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-swiftshader', '--use-angle=swiftshader', '--ignore-gpu-blocklist'],
});
const pageErrors = [];
let step = 0;
async function shot(page, name) {
  step += 1;
  await page.screenshot({ path: join(shots, `${String(step).padStart(2, '0')}-${name}.png`) });
}

async function signIn(page, url, token) {
  page.on('pageerror', (e) => pageErrors.push(`${url}: ${e.message}`));
  // A refused plan is a 409 answer, which Chromium logs as a failed resource: expected.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 409/.test(m.text())) pageErrors.push(`${url}: console: ${m.text()}`);
  });
  await page.goto(url);
  await page.waitForSelector('#login-form', { state: 'visible', timeout: 20_000 });
  await page.fill('#token', token);
  await page.click('#login-submit');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  // Let the map draw its first frames.
  await page.waitForFunction(() => window.deconflict?.map?.loaded(), null, { timeout: 30_000 });
}

/// Screen point of a `[lng, lat]` on the page's map.
async function screenPoint(page, lngLat) {
  const box = await page.locator('#map canvas').boundingBox();
  const p = await page.evaluate((ll) => window.deconflict.map.project(ll), lngLat);
  return { x: box.x + p.x, y: box.y + p.y };
}

async function renderedEntities(page) {
  return page.evaluate(() => {
    const map = window.deconflict.map;
    const layers = map.getStyle().layers.map((l) => l.id).filter((id) => id.startsWith('entity-'));
    return [...new Set(map.queryRenderedFeatures({ layers }).map((f) => f.properties.entity))];
  });
}

const M_PER_DEG_LAT = 111_320;

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();

  // A wrong token is refused on the login form, with the server's reason.
  page.on('pageerror', (e) => pageErrors.push(`login: ${e.message}`));
  await page.goto(`${ready.bravo.operator}/`);
  await page.waitForSelector('#login-form', { state: 'visible', timeout: 20_000 });
  await shot(page, 'login');
  await page.fill('#token', 'not-a-token');
  await page.click('#login-submit');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0, null, { timeout: 10_000 });
  const refusedLogin = await page.textContent('#login-error');
  check(/not signed in/i.test(refusedLogin), 'a bad token is refused at sign-in', refusedLogin);
  check(!page.url().includes('not-a-token'), 'the token never appears in the address', page.url());

  // Signed in as bravo's operator: both participants' operations and the constraint.
  const tileAnswers = [];
  page.on('response', (r) => { if (r.url().includes('/map/tiles/')) tileAnswers.push(r.status()); });
  await signIn(page, `${ready.bravo.operator}/`, ready.bravo.token);
  check(!page.url().includes(ready.bravo.token.slice(0, 20)), 'the token is not in the address', page.url());
  const view = await page.evaluate(() => window.deconflict.state.view);
  const byId = Object.fromEntries(view.entities.map((e) => [e.id, e]));
  check(byId[ready.bravo.intent]?.kind === 'own_intent' && byId[ready.bravo.intent].ovn, "bravo's own operation, with its OVN", view.entities);
  const kept = byId[ready.alpha.kept_intent];
  check(kept?.kind === 'other_intent' && kept.manager === 'alpha' && !kept.ovn, "alpha's operation, without an OVN", kept);
  check(view.entities.some((e) => e.kind === 'constraint' && e.manager === 'authority'), "the authority's restricted zone", view.entities);
  check(view.entities.some((e) => e.kind === 'subscription'), "bravo's subscription", view.entities);

  // The basemap: the participant's local tile archive, named in the map's corner.
  const corner = await page.textContent('#basemap-label');
  check(/test-basemap\.pmtiles/.test(corner) && /PMTiles/.test(corner), "the map's corner names the tile archive", corner);
  await page.waitForFunction(() => window.deconflict.map.isSourceLoaded('tiles'), null, { timeout: 15_000 });
  check(tileAnswers.includes(200), 'tiles are fetched from the participant', tileAnswers);

  // At 1280x800 the details and the live feed are on screen without scrolling the panel.
  const layout = await page.evaluate(() => {
    const side = document.getElementById('side');
    const box = (id) => document.getElementById(id).getBoundingClientRect();
    return {
      overflow: side.scrollHeight - side.clientHeight,
      details: [box('details').top, box('details').bottom],
      feed: [box('feed-section').top, box('feed-section').bottom],
      height: window.innerHeight,
    };
  });
  check(
    layout.overflow <= 0 && layout.details[1] - layout.details[0] >= 100 && layout.feed[1] <= layout.height && layout.feed[1] - layout.feed[0] >= 100,
    'details and live feed are visible at 1280x800 without scrolling',
    layout,
  );

  // The time slider: at +30 min both flights are live and drawn.
  await page.fill('#time', '30');
  await page.dispatchEvent('#time', 'input');
  await page.waitForTimeout(500);
  let drawn = await renderedEntities(page);
  check(drawn.includes(ready.bravo.intent) && drawn.includes(ready.alpha.kept_intent), 'both flights are drawn at +30 min', drawn);
  const label = await page.textContent(`.shape-label[data-entity="${ready.alpha.kept_intent}"]`);
  check(label === 'alpha · Accepted', "alpha's flight is labelled with its manager and state", label);
  await shot(page, 'airspace');
  await page.fill('#time', '0');
  await page.dispatchEvent('#time', 'input');
  await page.waitForTimeout(300);
  drawn = await renderedEntities(page);
  check(drawn.includes(ready.bravo.intent), "bravo's flight (from +25 min) is in the default window, now to +1 h", drawn);
  await page.selectOption('#window', '0');
  await page.waitForTimeout(300);
  drawn = await renderedEntities(page);
  check(!drawn.includes(ready.bravo.intent), "bravo's flight (from +25 min) is not drawn at the instant now", drawn);
  await page.selectOption('#window', '60');

  // 3D: the extrusion layer shows.
  await page.click('#toggle-3d');
  await page.waitForTimeout(500);
  const extruded = await page.evaluate(() => window.deconflict.map.getLayoutProperty('entity-extrusion', 'visibility'));
  check(extruded === 'visible', '3D shows extruded volumes', extruded);
  await shot(page, '3d');
  await page.click('#toggle-3d');
  await page.waitForTimeout(300);

  // Clicking alpha's flight shows its details.
  await page.fill('#time', '30');
  await page.dispatchEvent('#time', 'input');
  const keptCircle = kept.volumes[0].circle;
  check(keptCircle, "alpha's flight is a circle", kept.volumes[0]);
  let p = await screenPoint(page, keptCircle.center);
  await page.mouse.click(p.x, p.y);
  await page.waitForFunction((id) => document.getElementById('details-body').textContent.includes(id), ready.alpha.kept_intent, { timeout: 5_000 });
  const details = await page.textContent('#details-body');
  check(details.includes('alpha') && details.includes('Accepted'), 'clicking a shape shows its manager and state', details);

  // Draw a circle over alpha's flight and plan it: refused, with the explanation and a proposal.
  await page.click('#draw-circle');
  p = await screenPoint(page, keptCircle.center);
  await page.mouse.click(p.x, p.y);
  const [lng, lat] = keptCircle.center;
  const edge = await screenPoint(page, [lng, lat + 150 / M_PER_DEG_LAT]);
  await page.mouse.click(edge.x, edge.y);
  await page.fill('#lower', '0');
  await page.fill('#upper', '100');
  await page.fill('#start', '15');
  await page.fill('#end', '40');
  await page.fill('#priority', '0');
  await page.click('#plan-submit');
  await page.waitForSelector('#plan-result .refused', { timeout: 30_000 });
  const refusal = await page.textContent('#plan-result');
  check(refusal.includes(ready.alpha.kept_intent) && refusal.includes('alpha'), 'the refusal names alpha\'s operation', refusal);
  check(/volume 0/.test(refusal) && / m\./.test(refusal), 'the refusal gives the volume pair and the altitude band', refusal);
  check(/Proposal: Start \d+ min/.test(refusal), 'a proposal is offered', refusal);
  const highlighted = await page.evaluate(() => [...window.deconflict.state.highlight]);
  check(highlighted.includes(`${ready.alpha.kept_intent}#0`), "alpha's conflicting volume is highlighted", highlighted);
  // Drawn on a later animation frame than the state change: wait for it (bounded), then check.
  await page
    .waitForFunction(() => window.deconflict.map.queryRenderedFeatures({ layers: ['highlight'] }).length > 0, null, { timeout: 5_000 })
    .catch(() => {});
  const highlightDrawn = await page.evaluate(() => window.deconflict.map.queryRenderedFeatures({ layers: ['highlight'] }).length);
  check(highlightDrawn > 0, 'the highlight is drawn', highlightDrawn);
  await shot(page, 'refused');

  // Accept the proposal: planned.
  await page.click('#accept-proposal');
  await page.waitForSelector('#plan-result .planned', { timeout: 30_000 });
  const planned = await page.textContent('#plan-result');
  const newId = planned.match(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/)?.[0];
  check(newId && /Accepted/.test(planned), 'the shifted flight is planned', planned);
  await page.waitForFunction((id) => window.deconflict.state.view.entities.some((e) => e.id === id && e.kind === 'own_intent'), newId, { timeout: 10_000 });
  check(true, 'the new flight is on the map');
  await shot(page, 'accepted');

  // Live: alpha activates its flight; bravo's page hears of it without a reload.
  const activated = await fetch(`${ready.alpha.operator}/operator/intents/${ready.alpha.kept_intent}/activate`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ready.alpha.token}` },
  });
  check(activated.status === 200, 'alpha activates its flight', activated.status);
  await page.waitForFunction(
    (id) => [...document.querySelectorAll('#feed li[data-kind="received"]')].some((li) => li.textContent.includes(id) && li.textContent.includes('Activated')),
    ready.alpha.kept_intent,
    { timeout: 20_000 },
  );
  await page.waitForFunction((id) => window.deconflict.state.view.entities.some((e) => e.id === id && e.state === 'Activated'), ready.alpha.kept_intent, { timeout: 10_000 });
  const feedText = await page.textContent('#feed');
  check(/notification of .* acknowledged/.test(feedText), 'our own deliveries appear in the feed', feedText);
  await shot(page, 'live');

  // End the new flight from its panel.
  await page.evaluate((id) => window.deconflict.select(id), newId);
  await page.click('#details-body button[data-action="end"]');
  await page.waitForFunction((id) => !window.deconflict.state.view.entities.some((e) => e.id === id), newId, { timeout: 15_000 });
  check(true, 'ending a flight from its panel removes it');
  await shot(page, 'ended');
  await context.close();

  // The DSS's airspace view: references only, read-only, for the map scope.
  const dssContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const dss = await dssContext.newPage();
  await signIn(dss, ready.dss_map, ready.dss_map_token);
  await dss.waitForFunction((id) => window.deconflict.state.view.entities.some((e) => e.id === id), ready.alpha.kept_intent, { timeout: 15_000 });
  const dssView = await dss.evaluate(() => window.deconflict.state.view);
  check(dssView.mode === 'dss' && dssView.entities.every((e) => !e.ovn), 'the DSS view shows references without OVNs', dssView.entities);
  check(dssView.entities.some((e) => e.id === ready.bravo.intent) && dssView.entities.some((e) => e.kind === 'constraint'), "the DSS view has bravo's flight and the zone", dssView.entities);
  check(await dss.isHidden('#plan'), 'the DSS view cannot plan');
  const dssCorner = await dss.textContent('#basemap-label');
  check(/Natural Earth/.test(dssCorner) && /offline/.test(dssCorner), "the DSS's map says its basemap is the offline one", dssCorner);
  await dss.fill('#time', '30');
  await dss.dispatchEvent('#time', 'input');
  await dss.waitForTimeout(500);
  await shot(dss, 'dss');
  await dssContext.close();

  check(pageErrors.length === 0, 'no errors in the pages', pageErrors);
  console.log(`map test passed; screenshots in ${shots}`);
} catch (e) {
  console.error(`map test FAILED: ${e.message}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join('\n')}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
clearTimeout(deadline);
