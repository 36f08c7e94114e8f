// convscope explorer. Plain JavaScript, no libraries, no build step.
// Every number shown comes from the server's JSON API (/docs); nothing here re-derives a
// shape rule or recomputes a layer: the page draws what the engine computed.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  models: [], modelId: null, summary: null, runnable: false,
  input: { source: "digit", digit: 0 },
  maps: {}, inputMap: null, layers: [], graph: {},
  timings: { trace: [], run: [], predict: [] },
  ticket: 0, traceTicket: 0,  // answers to superseded requests are dropped
};
window.convscope = state;  // the end-to-end tests read timings and state from here

// --- small helpers ---------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const fmt = (v, digits = 4) => (v === null || v === undefined) ? "–" : v === 0 ? "0"
  : Number.isInteger(v) && Math.abs(v) < 1e15 ? v.toLocaleString("en-US")
  : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toFixed(digits);
const signed = (v) => (v < 0 ? "− " : "+ ") + fmt(Math.abs(v));
const human = (n) => n >= 1e9 ? (n / 1e9).toFixed(2) + " G" : n >= 1e6 ? (n / 1e6).toFixed(2) + " M"
  : n >= 1e3 ? (n / 1e3).toFixed(1) + " k" : String(n);
const dims = (shape) => shape ? shape.join("×") : "–";

class ApiError extends Error {
  constructor(body, status) { super(body.message || `HTTP ${status}`); this.field = body.field; this.status = status; }
}
async function api(path, body, options = {}) {
  const init = body === undefined ? {} : {
    method: "POST", body: options.raw ? body : JSON.stringify(body),
    headers: { "content-type": options.raw ? "application/octet-stream" : "application/json" },
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (!response.ok) throw new ApiError(data, response.status);
  return data;
}
function unpack(p) {
  if (!p) return null;
  const bin = atob(p.data);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return { shape: p.shape, data: new Float32Array(bytes.buffer), min: p.min, max: p.max };
}
function showError(node, err) {
  node.hidden = !err;
  node.textContent = err ? (err.field ? `${err.message}  [field: ${err.field}]` : err.message) : "";
}

// --- colours ---------------------------------------------------------------------------------
function diverging(t) {  // t in [-1, 1]: blue - white - red
  const a = Math.min(1, Math.abs(t));
  return t >= 0 ? [255, Math.round(255 * (1 - 0.85 * a)), Math.round(255 * (1 - 0.95 * a))]
    : [Math.round(255 * (1 - 0.95 * a)), Math.round(255 * (1 - 0.6 * a)), 255];
}
function grey(t) { const g = Math.round(255 * (1 - Math.max(0, Math.min(1, t)))); return [g, g, g]; }

// A map view: how a layer output (batch dropped) is shown as images, and which full index a cell is.
function mapView(shape) {
  if (shape.length === 3) {
    const [c, h, w] = shape;
    return { count: c, h, w, at: (ch, y, x) => (ch * h + y) * w + x, index: (ch, y, x) => [0, ch, y, x] };
  }
  if (shape.length === 2) {
    const [c, l] = shape;
    return { count: c, h: 1, w: l, at: (ch, y, x) => ch * l + x, index: (ch, y, x) => [0, ch, x] };
  }
  if (shape.length === 1) {
    const f = shape[0], w = Math.min(f, 32), h = Math.ceil(f / w);
    return { count: 1, h, w, size: f, at: (ch, y, x) => y * w + x, index: (ch, y, x) => [0, y * w + x] };
  }
  return null;
}
function drawMap(canvas, map, view, ch, cell, opts = {}) {
  const { h, w } = view;
  canvas.width = w * cell; canvas.height = h * cell;
  const ctx = canvas.getContext("2d");
  const range = opts.range || Math.max(Math.abs(map.min || 0), Math.abs(map.max || 0)) || 1;
  ctx.fillStyle = "#eef1f4"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const k = view.at(ch, y, x);
    if (k === null || (view.size !== undefined && k >= view.size)) continue;  // padding, or past a flat map's end
    const v = map.data[k];
    const [r, g, b] = opts.grey ? grey((v - (map.min || 0)) / (((map.max || 1) - (map.min || 0)) || 1)) : diverging(v / range);
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(x * cell, y * cell, cell, cell);
  }
  for (const [y, x, colour] of opts.marks || []) {
    ctx.strokeStyle = colour || "#d9480f"; ctx.lineWidth = Math.max(1, Math.min(3, cell / 4));
    ctx.strokeRect(x * cell + 1, y * cell + 1, cell - 2, cell - 2);
  }
  if (opts.overlay) {  // the receptive field: a mask of the same size
    ctx.fillStyle = "rgba(217, 72, 15, 0.45)";
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++)
      if (opts.overlay.data[y * w + x] > 0) ctx.fillRect(x * cell, y * cell, cell, cell);
  }
}

// --- model picker and architecture ---------------------------------------------------------------
async function loadModels(selectId) {
  const data = await api("/api/models");
  state.models = data.models;
  const select = $("#model-select");
  select.replaceChildren();
  const groups = { pretrained: "Trained", run: "Training runs", python: "From Python", zoo: "Zoo (random weights)",
    spec: "Uploaded specs", onnx: "Uploaded ONNX" };
  for (const [kind, label] of Object.entries(groups)) {
    const items = data.models.filter((m) => m.kind === kind);
    if (!items.length) continue;
    select.append(el("optgroup", { label }, items.map((m) => el("option", { value: m.id, text: m.name }))));
  }
  select.value = selectId || state.modelId || data.default;
  await selectModel(select.value);
}

async function selectModel(id) {
  state.modelId = id;
  clearPanel();
  $("#model-select").value = id;
  const info = state.models.find((m) => m.id === id);
  $("#model-info").textContent = info ? `${info.description} · input ${dims(info.input_shape)}` : "";
  showError($("#picker-error"), null);
  try {
    const summary = await api(`/api/models/${encodeURIComponent(id)}/summary`);
    if (id !== state.modelId) return;  // another model was picked while this one's summary was on its way
    state.summary = summary;
    state.runnable = summary.runnable.ok;
    renderArchitecture(summary);
  } catch (err) { if (id === state.modelId) showError($("#picker-error"), err); return; }
  const imageInput = info && info.input_shape && info.input_shape.length === 3;
  if (!imageInput && state.input.source !== "random") setInput({ source: "random", seed: 0 });
  await runModel();
}

function renderArchitecture(s) {
  const t = s.totals;
  $("#arch-totals").textContent = `${s.layers.length} layers · ${t.params.toLocaleString("en-US")} parameters · `
    + `${t.macs.toLocaleString("en-US")} MACs per sample (${human(t.macs)})`
    + (s.error ? ` · stops with an error: ${s.error}` : "");
  const body = $("#arch-table tbody");
  body.replaceChildren(...s.layers.map((r) => el("tr", {},
    el("td", { text: r.name }), el("td", { text: r.type }), el("td", { text: dims(r.output_shape ? r.output_shape.slice(1) : null) }),
    el("td", { text: dims(r.weight_shape) }), el("td", { class: "num", text: r.params.toLocaleString("en-US") }),
    el("td", { class: "num", text: r.macs.toLocaleString("en-US") }))));
  drawShapes(s);
}

// One pseudo-3D box per tensor: width ~ W, height ~ H, depth ~ log2(C); flat tensors are bars.
function drawShapes(s) {
  const ns = "http://www.w3.org/2000/svg";
  const shapes = [{ name: "input", shape: s.input_shapes[0].slice(1) },
    ...s.layers.filter((r) => r.output_shape).map((r) => ({ name: r.name, type: r.type, shape: r.output_shape.slice(1) }))];
  const shown = shapes.slice(0, 80);
  const size = (n) => 6 + 10 * Math.log2(1 + n);
  const tallest = Math.max(...shown.map((i) => size(i.shape.length === 3 ? i.shape[1] : 1)));
  const middle = tallest / 2 + 44, labels = tallest + 60;
  let x = 10;
  const parts = [];
  for (const item of shown) {
    // a value with no dims per sample (an ONNX Constant's [2] once the "batch" is dropped) is a bar of one
    const [c, h, w] = item.shape.length === 3 ? item.shape : item.shape.length === 2 ? [item.shape[0], 1, item.shape[1]] : [1, 1, item.shape[0] ?? 1];
    const bw = item.shape.length <= 1 ? 8 : size(w), bh = size(h), depth = Math.min(40, 3 * Math.log2(1 + c));
    const y0 = middle - bh / 2;
    const pts = (arr) => arr.map((p) => p.join(",")).join(" ");
    parts.push(`<polygon points="${pts([[x, y0], [x + depth, y0 - depth], [x + depth + bw, y0 - depth], [x + bw, y0]])}" fill="#d5e3f3" stroke="#0b5cad"/>`);
    parts.push(`<polygon points="${pts([[x + bw, y0], [x + bw + depth, y0 - depth], [x + bw + depth, y0 + bh - depth], [x + bw, y0 + bh]])}" fill="#a9c6e8" stroke="#0b5cad"/>`);
    parts.push(`<rect x="${x}" y="${y0}" width="${bw}" height="${bh}" fill="#eaf1f9" stroke="#0b5cad"/>`);
    const label = item.name.length > 12 ? "…" + item.name.slice(-11) : item.name;
    parts.push(`<text x="${x}" y="${labels}">${escapeXml(label)}</text><text x="${x}" y="${labels + 14}">${escapeXml(dims(item.shape))}</text>`);
    x += Math.max(bw + depth, 64) + 14;
  }
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", x); svg.setAttribute("height", labels + 22);
  svg.innerHTML = parts.join("");
  $("#arch-drawing").replaceChildren(svg);
  $("#arch-drawing").setAttribute("aria-label", "Tensor shapes: " + shown.map((i) => `${i.name} ${dims(i.shape)}`).join(", "));
}
const escapeXml = (t) => String(t).replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" }[c]));

// --- running the model and drawing every layer's maps -------------------------------------------
function setInput(input) {
  state.input = input;
  $("#input-source").value = input.source;
}
function inputRequest() {
  const i = state.input;
  if (i.source === "drawing") return { source: "drawing", pixels: i.pixels };
  if (i.source === "digit") return { source: "digit", digit: i.digit };
  return { source: "random", seed: i.seed || 0 };
}

async function runModel() {
  const status = $("#run-status");
  if (!state.runnable) {
    status.textContent = state.summary ? state.summary.runnable.reason : "";
    $("#layers").replaceChildren(); $("#input-view").replaceChildren();
    return;
  }
  if (state.input.source === "drawing" && !state.input.pixels) setInput({ source: "digit", digit: 0 });
  status.textContent = "running…";
  const started = performance.now(), ticket = ++state.ticket;
  try {
    const data = await api(`/api/models/${encodeURIComponent(state.modelId)}/run`, { input: inputRequest() });
    if (ticket !== state.ticket) return;  // a newer model or input was picked meanwhile
    showRun(data);
    state.timings.run.push(performance.now() - started);
    status.textContent = `ran in ${Math.round(performance.now() - started)} ms` + (data.prediction !== null ? ` · prediction ${data.prediction}` : "");
  } catch (err) { status.textContent = ""; showError($("#picker-error"), err); }
}

function showRun(data) {
  state.inputMap = unpack(data.input);
  state.maps = {}; state.graph = {}; state.layers = data.layers;
  for (const layer of data.layers) {
    state.graph[layer.name] = layer.input_from;
    if (layer.map) state.maps[layer.name] = unpack(layer.map);
  }
  const inView = mapView(state.inputMap.shape);
  const inputCanvases = [];
  for (let ch = 0; ch < Math.min(inView.count, 3); ch++) {
    const canvas = el("canvas", { class: "map", "aria-label": `model input, channel ${ch}` });
    drawMap(canvas, state.inputMap, inView, ch, Math.max(1, Math.floor(96 / Math.max(inView.h, inView.w))), { grey: true });
    inputCanvases.push(canvas);
  }
  $("#input-view").replaceChildren(el("h3", { text: `Input ${dims(state.inputMap.shape)}` }), el("div", { class: "maps" }, inputCanvases));
  const nodes = data.layers.map((layer) => layerNode(layer));
  $("#layers").replaceChildren(...nodes);
}

const MAX_MAPS = 64;
function layerNode(layer) {
  const shape = layer.shape.slice(1);
  const view = mapView(shape);
  const title = el("h3", { text: `${layer.name} · ${layer.type} · ${dims(shape)}` });
  const map = state.maps[layer.name];
  if (!view) return el("div", { class: "layer" }, title, el("p", { class: "muted", text: "not drawn: rank " + shape.length }));
  if (!map) {
    const count = Math.min(16, view.count);
    const node = el("div", { class: "layer", dataset: { layer: layer.name } }, title);
    node.append(el("button", { type: "button", onclick: () => loadMaps(layer, node, count) },
      `Load the maps of the first ${count} channel(s)`), el("span", { class: "muted", text: " (not sent with the run: too many values)" }));
    return node;
  }
  const cell = shape.length === 1 ? 10 : Math.max(1, Math.min(24, Math.floor(96 / Math.max(view.h, view.w))));
  const canvases = [], sent = shape.length === 1 ? 1 : map.shape[0];  // a partial load sends the first channels
  for (let ch = 0; ch < Math.min(sent, MAX_MAPS); ch++) canvases.push(mapCanvas(layer.name, map, view, ch, cell));
  const more = view.count > Math.min(sent, MAX_MAPS) ? el("p", { class: "muted", text: `first ${Math.min(sent, MAX_MAPS)} of ${view.count} channels` }) : null;
  return el("div", { class: "layer", dataset: { layer: layer.name } }, title, el("div", { class: "maps" }, canvases), more);
}

async function loadMaps(layer, node, count) {
  try {
    const data = await api(`/api/models/${encodeURIComponent(state.modelId)}/activations`,
      { input: inputRequest(), layer: layer.name, channels: [0, count] });
    const map = unpack(data.map);
    if (layer.shape.length === 2) map.shape = layer.shape.slice(1);
    state.maps[layer.name] = map;
    node.replaceWith(layerNode(layer));
  } catch (err) { showError($("#picker-error"), err); }
}

function mapCanvas(name, map, view, ch, cell) {
  const canvas = el("canvas", {
    class: "map", tabindex: 0, role: "button", dataset: { layer: name, channel: ch },
    "aria-label": `layer ${name}, channel ${ch}: ${view.h}×${view.w} map. Arrow keys move, Enter explains the cell.`,
  });
  const cursor = { y: 0, x: 0, shown: false };
  const redraw = () => drawMap(canvas, map, view, ch, cell, { marks: cursor.shown ? [[cursor.y, cursor.x]] : [] });
  redraw();
  canvas.addEventListener("click", (event) => {
    const r = canvas.getBoundingClientRect();
    cursor.x = Math.min(view.w - 1, Math.floor((event.clientX - r.left) / r.width * view.w));
    cursor.y = Math.min(view.h - 1, Math.floor((event.clientY - r.top) / r.height * view.h));
    cursor.shown = true; redraw();
    traceCell(name, view.index(ch, cursor.y, cursor.x));
  });
  canvas.addEventListener("keydown", (event) => {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    if (moves[event.key]) {
      const [dy, dx] = moves[event.key];
      cursor.y = Math.max(0, Math.min(view.h - 1, cursor.y + dy));
      cursor.x = Math.max(0, Math.min(view.w - 1, cursor.x + dx));
      cursor.shown = true; redraw(); event.preventDefault();
    } else if (event.key === "Enter" || event.key === " ") {
      cursor.shown = true; redraw(); event.preventDefault();
      traceCell(name, view.index(ch, cursor.y, cursor.x));
    }
  });
  canvas.addEventListener("blur", () => { cursor.shown = false; redraw(); });
  return canvas;
}

// --- the side panel: how one value was made -------------------------------------------------------
function clearPanel() {  // an explanation is of one model's value: another model starts with none
  state.traceTicket++;  // and the answer to a click on the old model, still on its way, is dropped
  $("#panel-body").replaceChildren();
  $("#panel-empty").hidden = false;
}

async function traceCell(layer, index) {
  const started = performance.now();
  const body = $("#panel-body");
  $("#panel-empty").hidden = true;
  body.setAttribute("aria-busy", "true");
  const ticket = ++state.traceTicket;
  try {
    const t = await api(`/api/models/${encodeURIComponent(state.modelId)}/trace`, { input: inputRequest(), layer, index });
    if (ticket !== state.traceTicket) return;  // a later click (or another model) wins
    renderTrace(t);
    const ms = performance.now() - started;
    state.timings.trace.push(ms);
    body.append(el("p", { class: "timing", id: "panel-timing", text: `explained in ${Math.round(ms)} ms (request, trace, drawing)` }));
  } catch (err) {
    if (ticket === state.traceTicket) body.replaceChildren(el("p", { class: "error", role: "alert", text: err.message }));
  } finally { body.removeAttribute("aria-busy"); }
}

function layerMap(name) { return name === "input" ? state.inputMap : state.maps[name]; }

function stepButton(from, index, text) {
  if (!from || from === "input") return el("span", { text });
  return el("button", { type: "button", title: `step into ${from} ${JSON.stringify(index)}`,
    "aria-label": `${text}: step into layer ${from} at ${index.join(", ")}`, onclick: () => traceCell(from, index) }, text);
}

function renderTrace(t) {
  const from = t.input_from;
  const fromText = from === "input" ? "the model input" : from ? `layer ${from}` : "values no layer output";
  const step = t.step;
  const parts = [
    el("h3", { text: `${t.layer} (${t.type}) at [${t.index.join(", ")}]` }),
    el("p", { class: "kv", text: step.kind === "combination" ? `op ${step.op} combines two values (${dims(step.input_shape)})`
      : step.kind === "sum" ? `op ${step.op} adds values along dims of a ${dims(step.input_shape)} tensor`
      : `op ${step.op} reads ${fromText} (${dims(step.input_shape)})` }),
  ];
  if (step.kind === "combination") parts.push(...combination(step));
  else if (step.kind === "sum") parts.push(...summed(t));
  else if (step.kind === "weighted_sum") parts.push(...weightedSum(t, from));
  else if (step.kind === "max" || step.kind === "mean" || step.kind === "power_mean") parts.push(...pooled(t, from));
  else parts.push(...single(t, from));
  parts.push(el("p", { class: "sum", id: "panel-sum", dataset: { value: t.value } }, `value = ${fmt(t.value, 6)}`),
    el("p", { class: "kv muted", text: `recomputed from the recorded terms alone: ${fmt(t.recomputed, 6)} (engine ${t.dtype})` }));
  if (t.then) parts.push(el("p", { class: "kv", text: `then ${t.then.name} → ${fmt(t.then_value, 6)}` }));
  if (t.strongest) {  // one step along the strongest path back to the input
    const s = t.strongest, cell = `[${s.index.join(", ")}]`;
    parts.push(el("p", { class: "kv", id: "panel-strongest" }, "largest contribution from ",
      s.layer === "input" ? el("span", { text: `the model input ${cell}` }) : stepButton(s.layer, s.index, `${s.layer} ${cell}`)));
  }
  if (t.influence) parts.push(...receptiveField(t.influence));
  $("#panel-body").replaceChildren(...parts);
}

function weightedSum(t, from) {
  const step = t.step, out = [];
  const source = layerMap(from);
  if (t.channel_sums) {  // a convolution: one block per input channel
    const byChannel = new Map();
    for (const term of step.terms) {
      const c = term.read.index[1];
      if (!byChannel.has(c)) byChannel.set(c, []);
      byChannel.get(c).push(term);
    }
    out.push(el("p", { class: "kv", text: `${t.channel_sums.length} input channel(s) × ${t.channel_sums[0].terms} taps = ${t.terms_total} products` + (step.groups > 1 ? ` (group ${step.group} of ${step.groups})` : "") }));
    for (const cs of t.channel_sums) out.push(channelBlock(cs, byChannel.get(cs.channel) || [], source, from));
  } else {  // linear: the largest products
    const terms = [...step.terms].sort((a, b) => Math.abs(b.product) - Math.abs(a.product));
    const shown = terms.slice(0, 24);
    out.push(el("p", { class: "kv", text: `${t.terms_total} products; the ${shown.length} largest by size:` }));
    out.push(el("table", { class: "grid terms" }, el("tr", {}, el("th", { text: "input" }), el("th", { text: "x" }), el("th", { text: "w" }), el("th", { text: "x·w" })),
      shown.map((term) => el("tr", {}, el("td", {}, stepButton(from, term.read.index, `[${term.read.index.slice(1).join(",")}]`)),
        el("td", { text: fmt(term.read.value) }), el("td", { text: fmt(term.weight) }), el("td", { text: fmt(term.product) })))));
  }
  out.push(el("p", { class: "kv", text: `Σ products = ${fmt(t.product_sum, 6)}${t.terms_truncated ? " (largest terms listed; the sum is over all)" : ""}` }));
  out.push(el("p", { class: "kv", text: step.bias === null ? "no bias" : `bias ${fmt(step.bias, 6)}` }));
  return out;
}

function channelBlock(cs, terms, source, from) {
  const kernelDims = terms[0].weight_index.length - 2;
  const ky = (term) => kernelDims >= 2 ? term.weight_index[term.weight_index.length - 2] : 0;
  const kx = (term) => term.weight_index[term.weight_index.length - 1];
  const rows = Math.max(...terms.map(ky)) + 1, cols = Math.max(...terms.map(kx)) + 1;
  const grid = (cellOf) => el("table", { class: "grid" }, Array.from({ length: rows }, (_, r) => el("tr", {},
    Array.from({ length: cols }, (_, c) => { const term = terms.find((q) => ky(q) === r && kx(q) === c); return term ? cellOf(term) : el("td"); }))));
  const weights = grid((term) => el("td", { text: fmt(term.weight, 3) }));
  const products = grid((term) => term.read.padding ? el("td", { class: "pad", title: `padding (${term.read.padding})`, text: fmt(term.product, 3) })
    : el("td", {}, stepButton(from, term.read.index, fmt(term.product, 3))));
  let picture = null;
  if (source && (source.shape.length < 3 || cs.channel < source.shape[0])) {
    const idx = terms.map((q) => q.read.index);
    const ys = idx.map((i) => i.length >= 4 ? i[2] : 0), xs = idx.map((i) => i[i.length - 1]);
    const view = windowView(mapView(source.shape), ys, xs);
    const cell = Math.max(2, Math.min(10, Math.floor(96 / Math.max(view.h, view.w))));
    picture = el("canvas", { "aria-label": `input channel ${cs.channel} with the window read`
      + (view.cropped ? ` (rows ${view.y0}…${view.y0 + view.h - 1}, columns ${view.x0}…${view.x0 + view.w - 1})` : "") });
    drawMap(picture, source, view, cs.channel, cell, { marks: ys.map((y, k) => [y - view.y0, xs[k] - view.x0]), grey: from === "input" });
  }
  return el("div", { class: "chan" },
    el("div", {}, el("div", { text: `channel ${cs.channel}` }), picture),
    el("div", {}, el("div", { class: "muted", text: "kernel slice" }), weights,
      el("div", { class: "muted", text: "products (input × weight)" }), products,
      el("div", { class: "kv", text: `channel sum ${fmt(cs.sum, 6)}` })));
}

// The part of a map a window picture shows: the whole map and the padding the window read, or, for a
// map larger than WINDOW_SPAN cells (a 224×224 input), WINDOW_SPAN cells around the window, so that the
// picture stays small enough for the panel and the window's cells stay visible.
const WINDOW_SPAN = 16;
function windowView(view, ys, xs) {
  const axis = (lo, hi, size) => {
    const first = Math.min(lo, 0), last = Math.max(hi, size - 1);
    if (last - first + 1 <= WINDOW_SPAN) return [first, last - first + 1];
    const length = Math.max(WINDOW_SPAN, hi - lo + 3);
    return [Math.max(first, Math.min(last - length + 1, Math.floor((lo + hi + 1 - length) / 2))), length];
  };
  const [y0, h] = axis(Math.min(...ys), Math.max(...ys), view.h), [x0, w] = axis(Math.min(...xs), Math.max(...xs), view.w);
  const inside = (y, x) => y >= 0 && y < view.h && x >= 0 && x < view.w;
  return { ...view, h, w, y0, x0, cropped: h < view.h || w < view.w,
    at: (ch, y, x) => inside(y + y0, x + x0) ? view.at(ch, y + y0, x + x0) : null };
}

function pooled(t, from) {
  const step = t.step, reads = step.reads;
  const ys = [...new Set(reads.map((r) => r.index.length >= 4 ? r.index[2] : 0))].sort((a, b) => a - b);
  const xs = [...new Set(reads.map((r) => r.index[r.index.length - 1]))].sort((a, b) => a - b);
  const winners = new Set(step.kind === "max" ? [step.winner] : []);
  const table = el("table", { class: "grid" }, ys.map((y) => el("tr", {}, xs.map((x) => {
    const k = reads.findIndex((r) => (r.index.length >= 4 ? r.index[2] : 0) === y && r.index[r.index.length - 1] === x);
    if (k < 0) return el("td");
    const r = reads[k];
    if (r.padding) return el("td", { class: "pad", title: `padding (${r.padding})`, text: fmt(r.value, 3) });
    return el("td", { class: winners.has(k) ? "win" : null }, stepButton(from, r.index, fmt(r.value, 3)));
  }))));
  const out = [el("p", { class: "kv", text: `window of ${reads.length} cells on channel ${reads[0].index[1]}` }), table];
  if (step.kind === "max") out.push(el("p", { class: "kv", text: `the winner (highlighted) is the first maximum in scan order: ${fmt(reads[step.winner].value, 6)}` + (step.ties.length > 1 ? ` (${step.ties.length} cells tie)` : "") }));
  if (step.kind === "mean") out.push(el("p", { class: "kv", text: `Σ ${fmt(reads.reduce((s, r) => s + r.value, 0), 6)} / ${fmt(step.divisor)} (${step.rule})` }));
  if (step.kind === "power_mean") out.push(el("p", { class: "kv", text: `(Σ x^${step.norm_type} / ${step.divisor} · ${step.kernel_volume})^(1/${step.norm_type})` }));
  return out;
}

// (x − mean) / √(var + eps) · γ + β of a batch or layer norm step, γ shown as given
const normFormula = (step, weight) => el("p", { class: "kv",
  text: `(x − ${fmt(step.mean)}) / √(${fmt(step.var)} + ${step.eps}) · ${fmt(weight)} ${signed(step.bias || 0)}` });

function single(t, from) {
  const step = t.step, read = step.kind === "layer_norm" || step.kind === "response_norm" ? step.reads[step.position] : step.read;
  if (!read) return [el("p", { class: "kv", text: step.kind })];
  const cell = read.padding ? read.source : read.index;  // padding steps into the cell it copied, if any
  const text = `[${read.index.join(", ")}]${read.padding ? ` (${read.padding} padding${read.source ? ` of [${read.source.join(", ")}]` : ""})` : ""} = ${fmt(read.value, 6)}`;
  const where = cell ? stepButton(from, cell, text) : el("span", { text });
  if (step.kind === "elementwise") return [el("p", { class: "kv" }, `${step.name}(x) with x = `, where),
    ...(step.made ? [el("p", { class: "kv", text: `x = ${combined(step.made, "a", "b")} (in the model's code, not a layer), where` }),
      ...operandLines(step.made)] : [])];
  if (step.kind === "layer_norm") return [el("p", { class: "kv" }, "x = ", where), normFormula(step, step.weight ?? 1),
    el("p", { class: "kv muted", text: `mean and variance of the ${step.reads.length} values normalised together` })];
  if (step.kind === "batch_norm") return [el("p", { class: "kv" }, "x = ", where), normFormula(step, step.weight)];
  if (step.kind === "response_norm") {
    const squares = step.reads.reduce((sum, r) => sum + r.value * r.value, 0);
    return [el("p", { class: "kv" }, "x = ", where), el("p", { class: "kv", text: `x / (${step.k} + ${step.alpha} · Σ x² ${fmt(squares, 6)} / ${step.size})^${step.beta}` }),
      el("p", { class: "kv muted", text: `Σ x² over the ${step.reads.length} channels of the window: ${step.reads.map((r) => r.index[1]).join(", ")} (channels past the edges are zeros)` })];
  }
  if (step.source) return [el("p", { class: "kv" }, `copied (${step.op}) from input ${step.operand}: `, operandWhere(step.source))];
  return [el("p", { class: "kv" }, `copied (${step.op}) from `, where)];
}

// a + b, max(a, b), ...: a two-operand op's formula with the operands' texts
const combined = (step, a, b) => /^[a-z]+$/.test(step.symbol) ? `${step.symbol}(${a}, ${b})` : `${a} ${step.symbol} ${b}`;

function operandWhere(o) {  // where a value came from; a button where a layer made it
  const cell = `[${o.read.index.join(", ")}]`, value = fmt(o.read.value, 6);
  const layer = o.call ? `${o.name}#${o.call + 1}` : o.name;
  if (o.origin === "layer") return stepButton(layer, o.read.index, `layer ${layer} ${cell} = ${value}`);
  if (o.origin === "op") return stepButton(o.name, o.read.index, `op ${o.name} ${cell} = ${value}`);
  return el("span", { text: o.origin === "input" ? `model input ${cell} = ${value}` : o.origin === "constant" ? `constant ${value}`
    : `${o.origin} ${o.name}${cell} = ${value}` });
}

function operandLines(step) {  // one line per operand, then how the model's code made it
  return step.operands.flatMap((o, k) => {
    const label = "ab"[k], lines = [el("p", { class: "kv" }, `${label} = `, operandWhere(o))];
    if (o.step) lines.push(el("div", { class: "nested" }, el("p", { class: "kv", text: `${label} = ${combined(o.step, "a", "b")}, where` }), ...operandLines(o.step)));
    return lines;
  });
}

function summed(t) {  // a sum over dims: the window of a spatial sum, else the values listed
  const step = t.step, source = step.source, reads = step.reads;
  const from = source.origin === "layer" ? (source.call ? `${source.name}#${source.call + 1}` : source.name)
    : source.origin === "input" || source.origin === "op" ? source.name || "input" : null;
  const what = from === "input" ? "the model input" : from ? `${source.origin} ${from}` : `a ${source.origin}`;
  const out = [el("p", { class: "kv", text: `Σ ${reads.length} values of ${what} over dim(s) ${step.dims.join(", ")}` })];
  const spatial = reads[0].index.length >= 3 && step.dims.every((d) => d >= reads[0].index.length - 2);
  if (spatial) out.push(...pooled(t, from));
  else out.push(el("table", { class: "grid terms" }, reads.slice(0, 24).map((r) => el("tr", {},
    el("td", {}, stepButton(from, r.index, `[${r.index.join(",")}]`)), el("td", { text: fmt(r.value) })))));
  return out;
}

function combination(step) {
  const [a, b] = step.operands.map((o) => fmt(o.read.value, 6));
  return [el("p", { class: "kv", text: `${combined(step, "a", "b")} = ${combined(step, a, b)}` }), ...operandLines(step)];
}

function receptiveField(influence) {
  const out = [el("h3", { text: "Receptive field on the input" }),
    el("p", { class: "kv", text: `${influence.count.toLocaleString("en-US")} input cells can change this value` + (influence.receptive_box ? `; box ${influence.receptive_box.map((b) => b.join("…")).join(" × ")}` : "") })];
  if (state.inputMap) {
    const mask = unpack(influence.mask);
    const view = mapView(state.inputMap.shape);
    if (mask.shape.length === 2 && mask.shape[0] === view.h && mask.shape[1] === view.w) {
      const canvas = el("canvas", { "aria-label": "the input image with the cells that influence the value highlighted" });
      drawMap(canvas, state.inputMap, view, 0, Math.max(1, Math.floor(160 / Math.max(view.h, view.w))), { grey: true, overlay: mask });
      out.push(canvas);
    }
  }
  return out;
}

// --- drawing a digit ---------------------------------------------------------------------------
function setupPad() {
  const pad = $("#pad"), ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let drawing = false, last = null, pending = null;
  const point = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
  const stroke = (p) => {
    ctx.strokeStyle = "#000"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...(last || p)); ctx.lineTo(...p); ctx.stroke(); last = p;
  };
  const schedule = () => { if (!pending) pending = setTimeout(() => { pending = null; predict(); }, 120); };
  pad.addEventListener("pointerdown", (e) => {
    drawing = true; last = null;
    try { pad.setPointerCapture(e.pointerId); } catch (err) { /* a pointer the browser does not track */ }
    stroke(point(e)); schedule(); e.preventDefault();
  });
  pad.addEventListener("pointermove", (e) => { if (drawing) { stroke(point(e)); schedule(); } });
  const end = () => { if (drawing) { drawing = false; last = null; predict(); } };
  pad.addEventListener("pointerup", end); pad.addEventListener("pointercancel", end);
  $("#pad-clear").addEventListener("click", () => { clear(); predict(); });
}

// 32×32 bitmap like the UCI digits' (before their 4×4 block counts): ink 1, paper 0.
function bitmap() {
  const small = document.createElement("canvas"); small.width = 32; small.height = 32;
  const ctx = small.getContext("2d");
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
  ctx.drawImage($("#pad"), 0, 0, 32, 32);
  const rgba = ctx.getImageData(0, 0, 32, 32).data, pixels = [];
  for (let i = 0; i < 32 * 32; i++) pixels.push(rgba[4 * i] < 128 ? 1 : 0);
  return pixels;
}

async function predict() {
  const pixels = bitmap(), started = performance.now();
  try {
    const ticket = ++state.ticket;
    const data = await api("/api/predict", { pixels });
    state.timings.predict.push(performance.now() - started);
    if (ticket !== state.ticket) return;
    $("#prediction").textContent = String(data.prediction);
    const best = data.prediction;
    $("#probabilities").replaceChildren(...data.probabilities.map((p, k) => el("li", { class: k === best ? "best" : null, "aria-label": `${k}: ${(100 * p).toFixed(1)} percent` },
      el("span", { text: String(k) }), el("span", {}, el("div", { class: "bar", style: `width:${(100 * p).toFixed(1)}%` })), el("span", { class: "num", text: `${(100 * p).toFixed(1)}%` }))));
    const small = $("#pad-small"), digit = { shape: [8, 8], data: Float32Array.from(data.digit), min: 0, max: 1 };
    drawMap(small, digit, mapView([1, 8, 8]), 0, 12, { grey: true, range: 1 });
    setInput({ source: "drawing", pixels });
    if (state.modelId === "digits") showRun(data); else await runModel();
  } catch (err) { $("#prediction").textContent = "error: " + err.message; }
}

// --- the convolution playground -----------------------------------------------------------------
const pg = { frames: [], frame: 0, timer: null, data: null };
function playgroundRequest() {
  const f = new FormData($("#pg-form"));
  const n = (k) => Number(f.get(k));
  return {
    in_channels: n("in_channels"), out_channels: n("out_channels"), size: [n("size_h"), n("size_w")],
    kernel: [n("kernel_h"), n("kernel_w")], stride: [n("stride_h"), n("stride_w")], padding: [n("padding_h"), n("padding_w")],
    dilation: [n("dilation_h"), n("dilation_w")], groups: n("groups"), transposed: f.get("transposed") === "on",
    output_padding: [n("output_padding_h"), n("output_padding_w")],
  };
}
let pgTimer = null;
function schedulePlayground() { clearTimeout(pgTimer); pgTimer = setTimeout(updatePlayground, 120); }
async function updatePlayground() {
  let data;
  try { data = await api("/api/playground", playgroundRequest()); } catch (err) { data = { ok: false, error: err.message }; }
  pg.data = data;
  stopAnimation();
  const error = $("#pg-error");
  if (!data.ok) {
    $("#pg-output-size").textContent = "invalid";
    showError(error, { message: `This setting breaks a rule: ${data.error}` });
    $("#pg-formulas").replaceChildren(); $("#pg-counts").textContent = "";
    pg.frames = []; drawFrame(); return;
  }
  showError(error, null);
  $("#pg-output-size").textContent = data.output_shape.slice(1).join(" × ");
  $("#pg-formulas").replaceChildren(...data.formulas.flatMap((f) => [el("p", { text: f.general }), el("p", { text: `${" ".repeat(f.axis.length + 5)}= ${f.numbers}` })]));
  $("#pg-counts").textContent = `weight ${dims(data.weight_shape)}${data.bias_shape ? ` + bias ${dims(data.bias_shape)}` : ""} = `
    + `${data.params.toLocaleString("en-US")} parameters · ${data.macs.toLocaleString("en-US")} MACs`;
  pg.frames = data.animation ? data.animation.frames : [];
  pg.frame = 0;
  $("#pg-frame").max = Math.max(0, pg.frames.length - 1);
  $("#pg-note").textContent = data.animation_note || (data.animation && data.animation.positions > pg.frames.length
    ? `the first ${pg.frames.length} of ${data.animation.positions} positions are animated` : "");
  drawFrame();
}

function drawFrame() {
  const canvas = $("#pg-canvas"), ctx = canvas.getContext("2d");
  const a = pg.data && pg.data.animation, frame = pg.frames[pg.frame];
  $("#pg-frame").value = pg.frame;
  if (!a || !frame) { ctx.clearRect(0, 0, canvas.width, canvas.height); $("#pg-sums").textContent = ""; $("#pg-frame-label").textContent = ""; return; }
  const input = a.input, cin = input.length, h = input[0].length, w = input[0][0].length;
  let minY = 0, maxY = h - 1, minX = 0, maxX = w - 1;
  for (const f of pg.frames) for (const t of f.terms) { minY = Math.min(minY, t[1]); maxY = Math.max(maxY, t[1]); minX = Math.min(minX, t[2]); maxX = Math.max(maxX, t[2]); }
  const out = a.output[a.channel], oh = out.length, ow = out[0].length;
  const gridW = maxX - minX + 1, gridH = maxY - minY + 1;
  const cell = Math.max(10, Math.min(26, Math.floor(860 / (cin * (gridW + 1) + ow + 3))));
  const sizes = Object.values(a.kernels)[0] || [[null]], kh = sizes.length, kw = sizes[0].length;
  canvas.width = Math.max(300, (cin * (gridW + 1) + ow + 3) * cell); canvas.height = (Math.max(gridH + kh + 2, oh) + 2) * cell;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = `${Math.max(9, cell * 0.45)}px system-ui`; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  const read = new Map(frame.terms.map((t) => [`${t[0]},${t[1]},${t[2]}`, t]));
  for (let c = 0; c < cin; c++) {
    const x0 = c * (gridW + 1) * cell, y0 = cell;
    ctx.fillStyle = "#14171a"; ctx.textAlign = "left"; ctx.fillText(`input ch ${c}`, x0, cell / 2); ctx.textAlign = "center";
    for (let y = minY; y <= maxY; y++) for (let x = minX; x <= maxX; x++) {
      const inside = y >= 0 && y < h && x >= 0 && x < w, px = x0 + (x - minX) * cell, py = y0 + (y - minY) * cell;
      const t = read.get(`${c},${y},${x}`);
      ctx.fillStyle = t ? "#ffd8c2" : inside ? "#ffffff" : "#eef1f4";
      ctx.fillRect(px, py, cell, cell); ctx.strokeStyle = "#c9d1d9"; ctx.strokeRect(px, py, cell, cell);
      ctx.fillStyle = inside ? "#14171a" : "#4a5560";
      ctx.fillText(inside ? String(input[c][y][x]) : "0", px + cell / 2, py + cell / 2);
      if (t) { ctx.strokeStyle = "#d9480f"; ctx.lineWidth = 2; ctx.strokeRect(px + 1, py + 1, cell - 2, cell - 2); ctx.lineWidth = 1; }
    }
    const ky0 = y0 + (gridH + 1) * cell, slice = a.kernels[String(c)];  // the kernel slice this channel meets
    if (!slice) continue;  // another group's channel: not read by this output channel
    ctx.fillStyle = "#14171a"; ctx.textAlign = "left"; ctx.fillText(`kernel [${a.channel}, ${c}]`, x0, ky0 - cell / 2); ctx.textAlign = "center";
    for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
      const px = x0 + x * cell, py = ky0 + y * cell, v = slice[y][x];
      ctx.fillStyle = v === null ? "#eef1f4" : "#fff4e6"; ctx.fillRect(px, py, cell, cell);
      ctx.strokeStyle = "#c9d1d9"; ctx.strokeRect(px, py, cell, cell);
      ctx.fillStyle = "#14171a"; ctx.fillText(v === null ? "" : fmtShort(v), px + cell / 2, py + cell / 2);
    }
  }
  const ox = cin * (gridW + 1) * cell + cell, oy = cell;
  ctx.fillStyle = "#14171a"; ctx.textAlign = "left"; ctx.fillText(`output ch ${a.channel}`, ox, cell / 2); ctx.textAlign = "center";
  for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) {
    const k = y * ow + x, px = ox + x * cell, py = oy + y * cell, done = k <= pg.frame || k >= pg.frames.length;
    const current = frame.out[0] === y && frame.out[1] === x;
    ctx.fillStyle = current ? "#ffd8c2" : done ? "#eaf1f9" : "#ffffff";
    ctx.fillRect(px, py, cell, cell); ctx.strokeStyle = current ? "#d9480f" : "#c9d1d9"; ctx.strokeRect(px, py, cell, cell);
    if (done || current) { ctx.fillStyle = "#14171a"; ctx.fillText(fmtShort(out[y][x]), px + cell / 2, py + cell / 2); }
  }
  const sums = Object.entries(frame.channel_sums).map(([c, s]) => {
    const terms = frame.terms.filter((q) => String(q[0]) === c);
    const written = terms.length <= 9 ? terms.map((q) => `${fmtShort(q[4])}·${fmtShort(q[5])}`).join(" + ") + " = " : "Σ ";
    return `channel ${c}: ${written}${fmtShort(s)}`;
  });
  $("#pg-sums").textContent = `output (${frame.out.join(", ")}): ${sums.join(" · ")}${frame.bias !== null ? ` · bias ${fmtShort(frame.bias)}` : ""} → ${fmtShort(frame.value)}`;
  $("#pg-frame-label").textContent = `${pg.frame + 1} / ${pg.frames.length}`;
}
const fmtShort = (v) => (v < 0 ? "−" : "") + (Number.isInteger(v) ? String(Math.abs(v)) : Math.abs(v).toFixed(2));
function stopAnimation() { clearInterval(pg.timer); pg.timer = null; $("#pg-play").textContent = "Play"; }
function setupPlayground() {
  $("#pg-form").addEventListener("input", schedulePlayground);
  $("#pg-form").addEventListener("change", schedulePlayground);
  $("#pg-prev").addEventListener("click", () => { stopAnimation(); pg.frame = Math.max(0, pg.frame - 1); drawFrame(); });
  $("#pg-next").addEventListener("click", () => { stopAnimation(); pg.frame = Math.min(pg.frames.length - 1, pg.frame + 1); drawFrame(); });
  $("#pg-frame").addEventListener("input", (e) => { stopAnimation(); pg.frame = Number(e.target.value); drawFrame(); });
  $("#pg-play").addEventListener("click", () => {
    if (pg.timer) { stopAnimation(); return; }
    $("#pg-play").textContent = "Pause";
    pg.timer = setInterval(() => { pg.frame = (pg.frame + 1) % Math.max(1, pg.frames.length); drawFrame(); }, 600);
  });
  updatePlayground();
}

// --- explain -------------------------------------------------------------------------------------
let topics = [];
async function setupExplain() {
  topics = (await api("/api/explain")).topics;
  $("#explain-topic").replaceChildren(...topics.map((t) => el("option", { value: t.name, text: `${t.name} — ${t.title}` })));
  $("#explain-topic").addEventListener("change", explainForm);
  $("#explain-run").addEventListener("click", runExplain);
  explainForm();
}
function explainForm() {
  const topic = topics.find((t) => t.name === $("#explain-topic").value);
  $("#explain-summary").textContent = topic.summary;
  $("#explain-options").replaceChildren(...topic.options.map((o) => el("label", { title: o.help }, `${o.name} `,
    o.type === "bool" ? el("input", { type: "checkbox", name: o.name, checked: o.default ? true : null })
      : el("input", { type: o.type === "int" ? "number" : "text", name: o.name, value: o.default === null ? "" : String(o.default), "aria-description": o.help }))));
}
async function runExplain() {
  const topic = topics.find((t) => t.name === $("#explain-topic").value), options = {};
  for (const o of topic.options) {
    const input = $("#explain-options").elements[o.name];
    if (o.type === "bool") options[o.name] = input.checked;
    else if (input.value !== "") options[o.name] = input.value;
  }
  $("#explain-text").textContent = "computing…";
  try {
    const data = await api(`/api/explain/${encodeURIComponent(topic.name)}`, { options });
    showError($("#explain-error"), null);
    $("#explain-text").textContent = data.text;
  } catch (err) { $("#explain-text").textContent = ""; showError($("#explain-error"), err); }
}

// --- uploads and wiring --------------------------------------------------------------------------
async function uploadSpec() {
  try {
    const data = await api("/api/models/spec", { text: $("#spec-text").value, name: "pasted spec" });
    await loadModels(data.model.id);
  } catch (err) { showError($("#picker-error"), err); }
}
async function uploadOnnx() {
  const file = $("#onnx-file").files[0];
  if (!file) { showError($("#picker-error"), { message: "choose an .onnx file first" }); return; }
  const shape = $("#onnx-shape").value.trim();
  const query = `?name=${encodeURIComponent(file.name)}` + (shape ? `&input_shape=${encodeURIComponent(shape)}` : "");
  try {
    const data = await api(`/api/models/onnx${query}`, await file.arrayBuffer(), { raw: true });
    await loadModels(data.model.id);
  } catch (err) { showError($("#picker-error"), err); }
}

function setupInputs() {
  $("#model-select").addEventListener("change", (e) => selectModel(e.target.value));
  $("#spec-load").addEventListener("click", uploadSpec);
  $("#onnx-load").addEventListener("click", uploadOnnx);
  const changed = () => {
    const source = $("#input-source").value;
    setInput(source === "drawing" ? { source, pixels: state.input.pixels || bitmap() }
      : source === "digit" ? { source, digit: Number($("#input-digit").value) } : { source, seed: Number($("#input-seed").value) });
    runModel();
  };
  $("#input-source").addEventListener("change", changed);
  $("#input-digit").addEventListener("change", () => { $("#input-source").value = "digit"; changed(); });
  $("#input-seed").addEventListener("change", () => { $("#input-source").value = "random"; changed(); });
}

document.addEventListener("DOMContentLoaded", async () => {
  setupInputs(); setupPad(); setupPlayground();
  setupExplain().catch((err) => showError($("#explain-error"), err));
  try { await loadModels(); } catch (err) { showError($("#picker-error"), err); }
  document.body.dataset.ready = "true";
});
