// Loads a DHAT file with Valgrind's dh_view.js (the viewer's own code, over a minimal fake
// DOM) and displays it under every sort metric the file enables; prints the first display
// and one line per metric. Exits non-zero (with the viewer's error) when the viewer rejects
// the file. Usage: node tests/dh_view_load.js DH_VIEW_JS FILE (run by tests/exit_report.rs).
const fs = require('fs'); const vm = require('vm');
function el(tag) {
  return { tagName: tag, childNodes: [], children: [], style: {}, textContent: '', innerHTML: '',
    classList: { add() {}, remove() {}, contains() { return false; }, toggle() {} },
    appendChild(c) { this.childNodes.push(c); this.children.push(c); return c; },
    setAttribute() {}, addEventListener() {}, removeChild() {}, cloneNode() { return el(tag); }, replaceWith() {}, insertBefore(c) { this.childNodes.push(c); return c; },
    parentNode: { replaceChild() {} }, get firstChild() { return this.childNodes[0]; },
    get lastChild() { return this.childNodes[this.childNodes.length - 1]; } };
}
const document = { createElement: el, createTextNode: (t) => ({ textContent: t, childNodes: [] }),
  getElementById: () => el('div'), title: '', body: el('body'), addEventListener() {} };
const ctx = vm.createContext({ document, window: { addEventListener() {}, onload: null }, console, performance: { now: () => 0 } });
vm.runInContext(fs.readFileSync(process.argv[2], 'utf8'), ctx);
const text = (n) => (n.textContent || '') + (n.childNodes || []).map(text).join('');
vm.runInContext(`
  gSelect = document.createElement('select');
  for (const d of gSelectData) { const o = document.createElement('option'); gSelect.appendChild(o); }
  gSelect.selectedIndex = 0;
  gHeaderDiv = document.createElement('div'); gTestingDiv = document.createElement('div');
  gMainDiv = document.createElement('div'); gLegendDiv = document.createElement('div');
  gTimingsDiv = document.createElement('div'); gFilename = 'x';
`, ctx);
ctx.__data = fs.readFileSync(process.argv[3], 'utf8');
vm.runInContext(`gData = JSON.parse(__data); buildTree();`, ctx);
const n = vm.runInContext('gSelectData.length', ctx);
let shown = 0;
for (let i = 0; i < n; i++) {
  if (vm.runInContext(`gSelect.childNodes[${i}].disabled`, ctx)) continue;
  vm.runInContext(`gSelect.selectedIndex = ${i}; gMainDiv = document.createElement('div'); gHeaderDiv = document.createElement('div'); displayTree(0, 0, 0);`, ctx);
  shown++; console.log("enabled: " + vm.runInContext(`gSelectData[${i}].label()`, ctx));
  if (i === 0 || process.env.ALL) { console.log(vm.runInContext(`gSelectData[${i}].label()`, ctx)); console.log(text(vm.runInContext("gHeaderDiv", ctx)).slice(0, 600)); console.log(text(vm.runInContext("gMainDiv", ctx)).slice(0, 1500)); }
}
console.log(`dh_view.js: loaded, ${shown} of ${n} sort metrics displayed`);
