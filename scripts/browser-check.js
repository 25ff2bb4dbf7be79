// Opens secalloc's heap profile in a real browser (headless Chromium, driven by
// playwright-core) and checks what a person would look at: the self-contained HTML report of
// `secure report html` (summary, both flame graphs drawn, a click zooms a graph, the search
// marks frames, each sortable column sorts, nothing fetched from the network, no script
// error), and the same DHAT file loaded into Valgrind's own dh_view.html through its file
// input and shown under every sort metric. Screenshots go to OUT.
//
// With LEAKS.svg, also the leak report's flame graph (`secure report convert --to svg`),
// opened as a file of its own.
//
// Usage: node scripts/browser-check.js REPORT.html DHAT.json DH_VIEW.html OUT [LEAKS.svg]
// (run by scripts/browser-check, which builds the inputs). Exits non-zero on the first
// check that fails, naming it.
'use strict';
const path = require('path');
const fs = require('fs');

const [reportPath, dhatPath, dhViewPath, outDir, leakSvgPath] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node browser-check.js REPORT.html DHAT.json DH_VIEW.html OUT [LEAKS.svg]');
  process.exit(2);
}
let playwright;
try {
  playwright = require('playwright-core');
} catch (e) {
  console.error('browser-check: playwright-core is not installed (NODE_PATH=' +
    (process.env.NODE_PATH || '') + '): ' + e.message);
  process.exit(2);
}

let failures = 0;
function check(ok, what) {
  console.log((ok ? 'ok   ' : 'FAIL ') + what);
  if (!ok) failures++;
  return ok;
}

// Opens `file` in a new page of `height` pixels (1280 wide), watching it: every request it
// makes must stay on this machine (the report promises to fetch nothing); script errors and
// console errors fail the check. Returns `{ page, seen }` for `closePage`.
async function openPage(browser, name, file, height) {
  const page = await browser.newPage({ viewport: { width: 1280, height } });
  const seen = { remote: [], errors: [] };
  page.on('request', (r) => {
    const u = r.url();
    if (!/^(file|data|about|blob):/.test(u)) seen.remote.push(u);
  });
  page.on('pageerror', (e) => seen.errors.push(name + ': ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') seen.errors.push(name + ' console: ' + m.text());
  });
  await page.goto('file://' + path.resolve(file));
  await page.waitForLoadState('load');
  return { page, seen };
}

// Checks what `openPage` watched (`offline`: that nothing was fetched too) and closes the page.
async function closePage({ page, seen }, name, offline) {
  if (offline) {
    check(seen.remote.length === 0, `${name}: fetched nothing from the network (${seen.remote.join(' ') || 'none'})`);
  }
  check(seen.errors.length === 0, `${name}: no script errors (${seen.errors.join('; ') || 'none'})`);
  await page.close();
}

function isNonIncreasing(xs) {
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[i - 1]) return false;
  return true;
}

// One inferno flame graph in frame `f` (an iframe's document or a page): laid out with a
// size, frames drawn with labels, a click on a frame narrower than the root zooms it, the
// search marks frames. `name` prefixes the check lines; `shot`: an element to screenshot
// after the zoom. Returns the graph's size.
async function checkFlame(f, name, shot) {
  const box = await f.$eval('svg', (s) => {
    const r = s.getBoundingClientRect();
    return { w: r.width, h: r.height };
  });
  const n = await f.$$eval('#frames > g rect', (rs) => rs.filter((r) => r.getBoundingClientRect().width > 0).length);
  check(box.w > 600 && box.h > 60 && n >= 3,
    `${name} drawn (${Math.round(box.w)}x${Math.round(box.h)} px, ${n} frames)`);
  // Labels: the widest frames have theirs (a graph that truncates every label to nothing
  // is drawn but unreadable).
  const labels = await f.$$eval('#frames > g text', (ts) => ts.filter((t) => t.textContent.trim().length >= 3).length);
  check(labels >= 2, `${name} shows frame labels (${labels})`);

  // A click on a frame that is not the root zooms: the graph's "Reset Zoom" shows and
  // the clicked frame widens to the full width.
  const target = await f.evaluate(() => {
    const gs = Array.from(document.querySelectorAll('#frames > g'));
    const total = Math.max(...gs.map((g) => g.querySelector('rect').getBoundingClientRect().width));
    const g = gs.find((g) => {
      const w = g.querySelector('rect').getBoundingClientRect().width;
      return w > 1 && w < 0.9 * total && g.querySelector('title');
    });
    return g ? g.querySelector('title').textContent : null;
  });
  if (!check(target !== null, `${name} has a frame narrower than the root`)) return box;
  const widthOf = (t) => {
    const g = Array.from(document.querySelectorAll('#frames > g')).find((g) => g.querySelector('title').textContent === t);
    return g.querySelector('rect').getBoundingClientRect().width;
  };
  const before = await f.evaluate(widthOf, target);
  await f.evaluate((t) => {
    const g = Array.from(document.querySelectorAll('#frames > g')).find((g) => g.querySelector('title').textContent === t);
    g.dispatchEvent(new MouseEvent('click', { bubbles: true }));
  }, target);
  const after = await f.evaluate(widthOf, target);
  const reset = await f.evaluate(() => {
    const unzoom = document.getElementById('unzoom');
    return !!unzoom && !unzoom.classList.contains('hide');
  });
  check(after > before * 1.05 && reset,
    `${name}: a click zooms (frame ${Math.round(before)} -> ${Math.round(after)} px, reset shown: ${reset})`);
  if (shot) await shot.screenshot({ path: path.join(outDir, 'report-flame-zoomed.png') });
  // Search, zoomed out again (what the graph's Search button does after its prompt): frames
  // matching get the search colour and the match line appears.
  const found = await f.evaluate(() => {
    unzoom();
    // The first path segment of the widest frame's function ("alloc" of "alloc::vec::..").
    const name = document.querySelector('#frames > g title').textContent.split(' (')[0];
    const word = name.split('::')[0].replace(/[^A-Za-z0-9_]/g, '') || 'main';
    search(word);
    const marked = Array.from(document.querySelectorAll('#frames > g rect'))
      .filter((r) => r.getAttribute('fill') === searchcolor).length;
    const matched = document.getElementById('matched');
    return { word, marked, matched: matched ? matched.textContent : '' };
  });
  check(found.marked >= 1 && /Matched/.test(found.matched),
    `${name}: search "${found.word}" marks ${found.marked} frames ("${found.matched}")`);
  return box;
}

// The leak report's flame graph (`secure report convert --to svg`), a standalone SVG
// document: the same checks, at the window's width (fluid).
async function checkLeakSvg(browser, svgPath) {
  const opened = await openPage(browser, 'leak svg', svgPath, 600);
  const { page } = opened;
  // The graph's init (on load) sizes it to the window in a zero timeout: wait for init,
  // then for a zero timeout queued after its own.
  await page.waitForFunction(() => typeof unzoombtn !== 'undefined' && !!unzoombtn);
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 0)));
  await checkFlame(page.mainFrame(), 'leak svg: flame graph', null);
  await page.screenshot({ path: path.join(outDir, 'leaks.png') });
  await closePage(opened, 'leak svg', true);
}

async function checkReport(browser) {
  const opened = await openPage(browser, 'report', reportPath, 900);
  const { page } = opened;

  const title = await page.title();
  check(title.startsWith('Heap profile of '), `report: title "${title}"`);
  const summary = await page.$$eval('table.summary tr', (rows) =>
    rows.map((r) => r.cells[0].textContent + ': ' + r.cells[1].textContent));
  check(summary.some((s) => s.startsWith('Total: ')) &&
    summary.some((s) => s.startsWith('At t-gmax: ')) &&
    summary.some((s) => s.startsWith('At t-end: ')),
    `report: summary has Total, At t-gmax, At t-end (${summary.length} rows)`);

  // The flame graphs: each iframe's SVG is laid out with a size and holds frames.
  const frames = await page.$$('iframe.flame');
  await page.screenshot({ path: path.join(outDir, 'report-opened.png'), fullPage: true });
  check(frames.length === 2, `report: two flame graphs (found ${frames.length})`);
  for (const [i, handle] of frames.entries()) {
    const f = await handle.contentFrame();
    const box = await checkFlame(f, `report: flame graph ${i + 1}`, i === 0 ? handle : null);
    const iframeBox = await handle.boundingBox();
    check(iframeBox && iframeBox.height >= box.h,
      `report: flame graph ${i + 1} not clipped by its frame (${iframeBox && Math.round(iframeBox.height)} >= ${Math.round(box.h)})`);
  }

  // The table: every sortable heading sorts its column, largest first.
  const heads = await page.$$eval('#top thead th', (ths) =>
    ths.map((t, i) => ({ i, text: t.textContent, sortable: t.classList.contains('sortable') })));
  const sortable = heads.filter((h) => h.sortable);
  const rowCount = await page.$$eval('#top tbody tr', (rs) => rs.length);
  check(sortable.length >= 6 && rowCount >= 2,
    `report: top table has ${rowCount} rows and ${sortable.length} sortable columns (${sortable.map((h) => h.text).join(', ')})`);
  for (const h of sortable) {
    await page.click(`#top thead th:nth-child(${h.i + 1})`);
    const col = await page.$$eval('#top tbody tr', (rs, c) =>
      rs.map((r) => Number(r.cells[c].getAttribute('data-v'))), h.i);
    const marked = await page.$eval(`#top thead th:nth-child(${h.i + 1})`, (t) => t.classList.contains('sorted'));
    check(isNonIncreasing(col) && marked && col.every((v) => Number.isFinite(v)),
      `report: click on "${h.text}" sorts it, largest first (top ${col.slice(0, 3).join(', ')})`);
  }
  await page.screenshot({ path: path.join(outDir, 'report.png'), fullPage: true });
  await closePage(opened, 'report', true);
}

async function checkDhView(browser) {
  const opened = await openPage(browser, 'dh_view', dhViewPath, 900);
  const { page } = opened;
  await page.setInputFiles('input[type=file]', path.resolve(dhatPath));
  // The viewer shows a file it rejects as one `span.error` with the exception's text.
  await page.waitForFunction(() => /Times \{/.test(document.body.innerText) || document.querySelector('span.error'), null, { timeout: 20000 });
  const rejected = await page.evaluate(() => {
    const e = document.querySelector('span.error');
    return e ? e.textContent : null;
  });
  check(rejected === null, `dh_view: loads the file without an error (${rejected || 'none'})`);
  const options = await page.$$eval('select option', (os) => os.map((o) => ({ v: o.value, label: o.textContent, disabled: o.disabled })));
  const enabled = options.filter((o) => !o.disabled);
  check(enabled.length >= 6, `dh_view: ${enabled.length} of ${options.length} sort metrics enabled (${enabled.map((o) => o.label).join(', ')})`);
  for (const o of enabled) {
    await page.selectOption('select', o.v);
    const shown = await page.evaluate(() => {
      const t = document.body.innerText;
      return { pp: (t.match(/PP \d+/g) || []).length, total: /Total:/.test(t) };
    });
    check(shown.pp >= 1 && shown.total, `dh_view: sorted by "${o.label}" shows the tree (${shown.pp} program points shown)`);
  }
  await page.selectOption('select', enabled[0].v);
  await page.screenshot({ path: path.join(outDir, 'dh_view.png'), fullPage: false });
  await closePage(opened, 'dh_view', false);
}

(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await playwright.chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--allow-file-access-from-files'],
  });
  try {
    await checkReport(browser);
    await checkDhView(browser);
    if (leakSvgPath) await checkLeakSvg(browser, leakSvgPath);
  } finally {
    await browser.close();
  }
  console.log(failures === 0 ? 'browser-check: all checks passed' : `browser-check: ${failures} check(s) failed`);
  process.exit(failures === 0 ? 0 : 1);
})().catch((e) => {
  console.error('browser-check: ' + e.stack);
  process.exit(1);
});
