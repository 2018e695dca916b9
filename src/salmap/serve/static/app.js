"use strict";

// The page of `salmap serve`: the server computes maps and curves; the page blends the maps on
// the image itself (so the opacity and the colour map change at once) and reads values on hover.

const $ = (selector, root = document) => root.querySelector(selector);
const BOX_COLOURS = { cam: "#22d3ee", casm: "#84cc16" };
const DEFAULT_METHODS = ["gradcam"];

const state = {
  info: null,
  image: null, // the server's description of the open image
  view: null, // the screen copy, an HTMLImageElement
  target: null,
  methods: new Set(),
  alpha: 0.6,
  colormap: "inferno",
  boxes: new Set(),
  steps: null,
  maps: new Map(), // "image|method|target" -> decoded map
  curves: new Map(), // "image|method|target|steps" -> curves
  cards: new Map(), // method -> card element
  askedAt: 0, // when the user last asked for new maps (performance.now())
  probabilities: new Map(), // "image|class" -> the model's probability
  luts: {},
};

async function api(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).error || message;
    } catch (_) {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  return response.json();
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function percent(p) {
  return p >= 0.995 ? `${(100 * p).toFixed(0)}%` : p >= 0.001 ? `${(100 * p).toFixed(1)}%` : "<0.1%";
}

// set up

async function start() {
  state.info = await api("/api/info");
  const info = state.info;
  $("#model").textContent = `${info.model} · ${info.input_size[0]}×${info.input_size[1]} input · ${info.classes.length} classes`;
  $("#formats").textContent = `JPEG, PNG, WebP, BMP or TIFF · up to ${info.max_megapixels} megapixels`;
  for (const [name, table] of Object.entries(info.colormaps)) {
    state.luts[name] = Uint8Array.from(table.flat());
    $("#colormap").append(new Option(name, name, name === state.colormap, name === state.colormap));
  }
  state.steps = info.curve_steps;
  for (const steps of info.curve_step_choices) {
    const label = steps === info.curve_steps ? `${steps} (default)` : `${steps}`;
    $("#steps").append(new Option(label, steps, steps === state.steps, steps === state.steps));
  }
  const names = $("#class-names");
  info.classes.forEach((name, index) => names.append(new Option(`${name} (${index})`)));
  buildMethods();
  buildBoxRules();
  buildSamples();
  bindControls();
  $("#tabs").hidden = !info.reports;
  document.body.dataset.ready = "true";
}

function buildMethods() {
  const holder = $("#methods");
  for (const method of state.info.methods) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = method.name;
    box.checked = DEFAULT_METHODS.includes(method.name);
    if (box.checked) state.methods.add(method.name);
    box.addEventListener("change", () => {
      state.askedAt = performance.now();
      if (box.checked) state.methods.add(method.name);
      else state.methods.delete(method.name);
      renderCards();
    });
    const name = document.createElement("span");
    name.textContent = method.name;
    const family = document.createElement("span");
    family.className = "family";
    family.textContent = method.class_dependent ? method.family : "trained, any class";
    label.title = method.description;
    label.append(box, name, family);
    holder.append(label);
  }
}

function buildBoxRules() {
  const holder = $("#box-rules");
  for (const [rule, description] of Object.entries(state.info.box_rules)) {
    const label = document.createElement("label");
    label.title = description;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = rule;
    box.addEventListener("change", () => {
      if (box.checked) state.boxes.add(rule);
      else state.boxes.delete(rule);
      redrawAll();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = BOX_COLOURS[rule];
    label.append(box, swatch, document.createTextNode(`${rule.toUpperCase()} box`));
    holder.append(label);
  }
}

function buildSamples() {
  const holder = $("#samples");
  for (const name of state.info.samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `${name} (scikit-image)`;
    button.dataset.sample = name;
    const img = document.createElement("img");
    img.src = `/api/samples/${name}/thumbnail.jpg`;
    img.alt = name;
    button.append(img);
    button.addEventListener("click", () => {
      state.askedAt = performance.now();
      openImage(api(`/api/samples/${name}`, { method: "POST" }), name);
    });
    holder.append(button);
  }
}

function bindControls() {
  const drop = $("#drop");
  $("#file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) upload(file);
    event.target.value = "";
  });
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const kind of ["dragleave", "drop"]) {
    drop.addEventListener(kind, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) upload(file);
  });
  $("#alpha").addEventListener("input", (event) => {
    state.alpha = Number(event.target.value);
    $("#alpha-value").textContent = state.alpha.toFixed(2);
    redrawAll();
  });
  $("#colormap").addEventListener("change", (event) => {
    state.colormap = event.target.value;
    redrawAll();
  });
  $("#steps").addEventListener("change", (event) => {
    state.steps = Number(event.target.value);
    renderCards();
  });
  $("#all-curves").addEventListener("click", () => {
    for (const method of state.methods) requestCurves(method);
  });
  $("#class-search").addEventListener("change", (event) => chooseClass(event.target.value));
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
}

// the image and its classes

function upload(file) {
  state.askedAt = performance.now();
  const request = api("/api/images", {
    method: "POST",
    body: file,
    headers: { "X-Filename": encodeURIComponent(file.name) },
  });
  openImage(request, null);
}

async function openImage(request, sample) {
  showError("");
  $("#status").textContent = "Reading the image…";
  let image;
  try {
    image = await request;
  } catch (error) {
    showError(error.message);
    if (state.image) $("#status").innerHTML = statusText();
    else $("#status").textContent = "Open a sample photo or an image of your own.";
    return;
  }
  const view = new Image();
  view.src = `/api/images/${image.id}/view.jpg`;
  await view.decode();
  state.image = image;
  state.view = view;
  state.target = image.top[0].index;
  for (const entry of image.top) state.probabilities.set(`${image.id}|${entry.index}`, entry.probability);
  for (const button of document.querySelectorAll(".samples button")) {
    button.classList.toggle("current", button.dataset.sample === sample);
  }
  $("#all-curves").disabled = false;
  renderTop();
  renderCards();
}

function renderTop() {
  const list = $("#top");
  list.replaceChildren();
  for (const entry of state.image.top) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.index = entry.index;
    button.classList.toggle("current", entry.index === state.target);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = entry.name;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(entry.probability);
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.display = "block";
    fill.style.width = `${Math.max(1, 100 * entry.probability)}%`;
    track.append(fill);
    button.append(label, value, track);
    button.addEventListener("click", () => setTarget(entry.index));
    item.append(button);
    list.append(item);
  }
}

function chooseClass(text) {
  const note = $("#class-note");
  note.hidden = true;
  if (!state.image || !text.trim()) return;
  const classes = state.info.classes;
  const suffix = text.match(/\((\d+)\)\s*$/);
  let index = suffix ? Number(suffix[1]) : /^\d+$/.test(text.trim()) ? Number(text.trim()) : -1;
  if (index < 0) {
    const wanted = text.trim().toLowerCase();
    index = classes.findIndex((name) => name.toLowerCase() === wanted);
    if (index < 0) index = classes.findIndex((name) => name.toLowerCase().includes(wanted));
  }
  if (index < 0 || index >= classes.length) {
    note.textContent = `No class matches “${text}”.`;
    note.hidden = false;
    return;
  }
  setTarget(index);
}

function setTarget(index) {
  state.askedAt = performance.now();
  state.target = index;
  for (const button of document.querySelectorAll("#top button")) {
    button.classList.toggle("current", Number(button.dataset.index) === index);
  }
  renderCards();
}

function statusText() {
  const image = state.image;
  const name = state.info.classes[state.target];
  const known = state.probabilities.get(`${image.id}|${state.target}`);
  const probability = known === undefined ? "" : ` · probability ${percent(known)}`;
  return `<strong>${escapeHtml(image.name)}</strong> · ${image.width}×${image.height} · explaining <strong>${escapeHtml(name)}</strong> [${state.target}]${probability}`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// method cards

function methodInfo(name) {
  return state.info.methods.find((method) => method.name === name);
}

function renderCards() {
  const holder = $("#cards");
  const order = state.info.methods.map((method) => method.name).filter((name) => state.methods.has(name));
  for (const [name, card] of state.cards) {
    if (!state.methods.has(name)) {
      card.remove();
      state.cards.delete(name);
    }
  }
  order.forEach((name) => {
    let card = state.cards.get(name);
    if (!card) {
      card = makeCard(name);
      state.cards.set(name, card);
    }
    holder.append(card); // keeps the registry's order
  });
  if (!state.image) return;
  $("#status").innerHTML = statusText();
  updateResultsLink();
  for (const name of order) loadCard(state.cards.get(name));
  renderAucTable();
}

function makeCard(name) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  const info = methodInfo(name);
  card.dataset.method = name;
  $(".name", card).textContent = name;
  $(".description", card).textContent = info.description;
  const canvas = $("canvas", card);
  canvas.addEventListener("mousemove", (event) => readValue(card, event));
  canvas.addEventListener("mouseleave", () => {
    $(".readout", card).textContent = "hover the map to read its value";
  });
  $(".curves-button", card).addEventListener("click", () => requestCurves(name));
  return card;
}

function mapKey(method) {
  const dependent = methodInfo(method).class_dependent;
  return `${state.image.id}|${method}|${dependent ? state.target : "any"}`;
}

function query() {
  return `target=${state.target}`;
}

async function loadCard(card) {
  const method = card.dataset.method;
  const key = mapKey(method);
  const base = `/api/images/${state.image.id}/maps/${method}`;
  $(".npy", card).href = `${base}/map.npy?${query()}`;
  updatePngLink(card);
  if (card.dataset.key === key && card.dataset.state === "ready") {
    card.dataset.target = state.target;
    showKnownCurves(card);
    return;
  }
  card.dataset.key = key;
  card.dataset.target = state.target;
  $(".card-error", card).hidden = true;
  $(".curves", card).hidden = true;
  const known = state.maps.get(key);
  if (known) {
    showMap(card, known, true);
    showKnownCurves(card);
    return;
  }
  card.dataset.state = "loading";
  const stop = ticker($(".elapsed", card), "computing");
  try {
    const found = await api(`${base}?${query()}`);
    const decoded = decodeMap(found);
    state.maps.set(key, decoded);
    if (card.dataset.key === key) {
      showMap(card, decoded, found.cached);
      showKnownCurves(card);
    }
  } catch (error) {
    if (card.dataset.key === key) {
      card.dataset.state = "error";
      const box = $(".card-error", card);
      box.textContent = error.message;
      box.hidden = false;
    }
  } finally {
    stop();
  }
}

function ticker(element, label) {
  const started = performance.now();
  element.textContent = `${label}…`;
  const timer = setInterval(() => {
    element.textContent = `${label}… ${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 100);
  return () => clearInterval(timer);
}

function decodeMap(found) {
  const bytes = Uint8Array.from(atob(found.values), (c) => c.charCodeAt(0));
  return { ...found, values: new Uint16Array(bytes.buffer) };
}

function showMap(card, found, cached) {
  card.map = found;
  card.dataset.state = "ready";
  const seconds = cached ? "cached" : `${found.seconds.toFixed(2)} s`;
  $(".badge", card).textContent = found.class_dependent ? seconds : `${seconds} · any class`;
  const choices = Object.entries(found.choices).map(([key, value]) => `${key} ${value}`);
  const settings = Object.entries(found.settings)
    .filter(([key, value]) => value !== null && !(key in found.choices))
    .map(([key, value]) => `${key} ${value}`);
  $(".meta", card).textContent = [...choices, ...settings].join(" · ");
  state.probabilities.set(`${state.image.id}|${found.target}`, found.probability);
  $("#status").innerHTML = statusText();
  draw(card);
  // milliseconds from the user's request to this map on the screen (read by benchmarks/serve.py)
  card.dataset.shownMs = (performance.now() - state.askedAt).toFixed(1);
}

function draw(card) {
  const found = card.map;
  if (!found || !state.view) return;
  const canvas = $("canvas", card);
  canvas.width = found.width;
  canvas.height = found.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(state.view, 0, 0, found.width, found.height);
  const picture = context.getImageData(0, 0, found.width, found.height);
  const pixels = picture.data;
  const lut = state.luts[state.colormap];
  const values = found.values;
  const scale = found.scale > 0 ? found.scale * 65535 : 0;
  for (let i = 0, p = 0; i < values.length; i += 1, p += 4) {
    const v = scale > 0 ? Math.min(1, values[i] / scale) : 0;
    const a = state.alpha * v;
    const k = 3 * Math.round(v * 255);
    pixels[p] = (1 - a) * pixels[p] + a * lut[k];
    pixels[p + 1] = (1 - a) * pixels[p + 1] + a * lut[k + 1];
    pixels[p + 2] = (1 - a) * pixels[p + 2] + a * lut[k + 2];
  }
  context.putImageData(picture, 0, 0);
  const sx = found.width / state.image.width;
  const sy = found.height / state.image.height;
  context.lineWidth = Math.max(2, found.width / 220);
  for (const rule of state.boxes) {
    const box = found.boxes[rule];
    if (!box) continue;
    context.strokeStyle = BOX_COLOURS[rule];
    context.strokeRect(box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy);
  }
}

function redrawAll() {
  for (const card of state.cards.values()) {
    draw(card);
    updatePngLink(card);
  }
}

function updatePngLink(card) {
  if (!state.image) return;
  const base = `/api/images/${state.image.id}/maps/${card.dataset.method}`;
  $(".png", card).href = `${base}/map.png?${query()}&alpha=${state.alpha}&colormap=${state.colormap}`;
}

function updateResultsLink() {
  const link = $("#results");
  const names = [...state.cards.keys()];
  link.classList.toggle("disabled", names.length === 0);
  link.href = `/api/images/${state.image.id}/results.json?${query()}&steps=${state.steps}&methods=${names.join(",")}`;
}

function readValue(card, event) {
  const found = card.map;
  if (!found) return;
  const canvas = event.currentTarget;
  const x = Math.min(found.width - 1, Math.floor((event.offsetX * found.width) / canvas.clientWidth));
  const y = Math.min(found.height - 1, Math.floor((event.offsetY * found.height) / canvas.clientHeight));
  const value = found.values[y * found.width + x] / 65535;
  const ix = Math.floor(((x + 0.5) * state.image.width) / found.width);
  const iy = Math.floor(((y + 0.5) * state.image.height) / found.height);
  $(".readout", card).textContent = `map ${value.toFixed(3)} at pixel (${ix}, ${iy})`;
}

// deletion and insertion

function curveKey(method) {
  return `${mapKey(method)}|${state.target}|${state.steps}`;
}

function showKnownCurves(card) {
  const known = state.curves.get(curveKey(card.dataset.method));
  if (known) showCurves(card, known);
}

async function requestCurves(method) {
  const card = state.cards.get(method);
  if (!card || !state.image) return;
  const key = curveKey(method);
  if (state.curves.has(key)) {
    showCurves(card, state.curves.get(key));
    return;
  }
  const panel = $(".curves", card);
  panel.hidden = false;
  panel.replaceChildren();
  const working = document.createElement("div");
  working.className = "working";
  const spinner = document.createElement("span");
  spinner.className = "spinner";
  const label = document.createElement("span");
  working.append(spinner, label);
  panel.append(working);
  card.dataset.curves = "loading";
  const stop = ticker(label, `deletion and insertion, ${state.steps} steps`);
  try {
    const url = `/api/images/${state.image.id}/curves/${method}?${query()}&steps=${state.steps}`;
    const found = await api(url);
    state.curves.set(key, found);
    if (curveKey(method) === key) showCurves(card, found);
    renderAucTable();
  } catch (error) {
    label.textContent = error.message;
    spinner.remove();
    card.dataset.curves = "error";
  } finally {
    stop();
  }
}

function showCurves(card, found) {
  const panel = $(".curves", card);
  panel.hidden = false;
  panel.replaceChildren(curveChart(found));
  const legend = document.createElement("div");
  legend.className = "legend";
  const deletion = document.createElement("span");
  deletion.className = "deletion";
  deletion.dataset.auc = "deletion";
  deletion.textContent = `deletion AUC ${found.deletion_auc.toFixed(3)} ↓`;
  const insertion = document.createElement("span");
  insertion.className = "insertion";
  insertion.dataset.auc = "insertion";
  insertion.textContent = `insertion AUC ${found.insertion_auc.toFixed(3)} ↑`;
  const steps = document.createElement("span");
  steps.textContent = `${found.steps} steps · ${found.cached ? "cached" : `${found.seconds.toFixed(1)} s`}`;
  steps.className = "steps";
  legend.append(deletion, insertion, steps);
  panel.append(legend);
  card.dataset.curves = "ready";
}

function curveChart(found) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 320;
  const height = 120;
  const pad = { left: 28, right: 6, top: 6, bottom: 18 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const add = (tag, attributes) => {
    const element = document.createElementNS(ns, tag);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    svg.append(element);
    return element;
  };
  const px = (f) => pad.left + f * w;
  const py = (p) => pad.top + (1 - p) * h;
  for (const tick of [0, 0.5, 1]) {
    add("line", { x1: px(0), x2: px(1), y1: py(tick), y2: py(tick), stroke: "#e3e7ee" });
    add("text", { x: pad.left - 4, y: py(tick) + 3, "text-anchor": "end", "font-size": 9, fill: "#667085" }).textContent = tick;
  }
  add("text", { x: px(0) + 4, y: py(1) + 10, "font-size": 9, fill: "#667085" }).textContent = "probability of the class";
  for (const tick of [0, 0.5, 1]) {
    add("text", { x: px(tick), y: height - 4, "text-anchor": "middle", "font-size": 9, fill: "#667085" }).textContent =
      tick === 0.5 ? "fraction of pixels changed" : tick;
  }
  const series = [
    [found.deletion, "#d1495b"],
    [found.insertion, "#2f6fde"],
  ];
  for (const [values, colour] of series) {
    const points = values.map((p, i) => `${px(found.fractions[i]).toFixed(1)},${py(p).toFixed(1)}`);
    add("polygon", {
      points: `${px(0)},${py(0)} ${points.join(" ")} ${px(1)},${py(0)}`,
      fill: colour,
      "fill-opacity": 0.1,
    });
    add("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 1.6 });
  }
  return svg;
}

function renderAucTable() {
  const table = $("#aucs");
  const body = $("tbody", table);
  body.replaceChildren();
  const rows = [];
  for (const { name: method } of state.info.methods) {
    if (!state.cards.has(method)) continue;
    const found = state.curves.get(curveKey(method));
    if (found) rows.push([method, found]);
  }
  table.hidden = rows.length === 0;
  const best = (pick, better) => {
    const values = rows.map(([, found]) => pick(found));
    return better === "lower" ? Math.min(...values) : Math.max(...values);
  };
  const lowest = best((found) => found.deletion_auc, "lower");
  const highest = best((found) => found.insertion_auc, "higher");
  for (const [method, found] of rows) {
    const row = document.createElement("tr");
    const cells = [
      [method, false],
      [found.deletion_auc.toFixed(3), rows.length > 1 && found.deletion_auc === lowest],
      [found.insertion_auc.toFixed(3), rows.length > 1 && found.insertion_auc === highest],
      [found.steps, false],
    ];
    for (const [text, mark] of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (mark) cell.className = "best";
      row.append(cell);
    }
    body.append(row);
  }
}

// evaluation reports

function showTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("#explore").hidden = name !== "explore";
  $("#reports").hidden = name !== "reports";
  if (name === "reports" && !$("#report-list").dataset.loaded) loadReports();
}

async function loadReports() {
  const holder = $("#report-list");
  holder.dataset.loaded = "true";
  try {
    const found = await api("/api/reports");
    holder.replaceChildren(...found.reports.map((report) => reportSection(report, found.groups)));
  } catch (error) {
    holder.textContent = error.message;
  }
}

function reportSection(report, titles) {
  const metrics = report.metrics;
  const section = document.createElement("section");
  section.className = "report";
  const title = document.createElement("h3");
  title.textContent = `${report.folder === "." ? "" : `${report.folder}: `}${metrics.data || "evaluation"}`;
  const summary = document.createElement("p");
  summary.className = "summary";
  const accuracy = typeof metrics.accuracy === "number" ? `, top-1 accuracy ${(100 * metrics.accuracy).toFixed(1)}%` : "";
  summary.textContent = `model ${metrics.model}, ${metrics.images} images${accuracy}. Click a column to sort.`;
  section.append(title, summary);
  const columns = metrics.columns || {};
  const groups = new Map();
  for (const [key, column] of Object.entries(columns)) {
    const present = Object.values(metrics.methods).some((row) => key in row);
    if (!present) continue;
    if (!groups.has(column.group)) groups.set(column.group, []);
    groups.get(column.group).push([key, column]);
  }
  if (groups.size === 0) {
    const keys = [...new Set(Object.values(metrics.methods).flatMap((row) => Object.keys(row)))];
    groups.set("metrics", keys.map((key) => [key, { title: key, percent: false, better: null }]));
  }
  for (const [group, keyed] of groups) {
    const heading = document.createElement("h4");
    heading.textContent = titles[group] || group;
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.append(metricTable(metrics.methods, keyed));
    section.append(heading, wrap);
  }
  const figures = document.createElement("div");
  figures.className = "figures";
  for (const [name, number] of Object.entries(report.figures)) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `/api/reports/figures/${number}`;
    img.alt = name;
    img.loading = "lazy";
    const caption = document.createElement("figcaption");
    caption.textContent = name;
    figure.append(img, caption);
    figures.append(figure);
  }
  section.append(figures);
  return section;
}

function metricTable(methods, keyed) {
  const table = document.createElement("table");
  table.className = "metrics";
  const head = document.createElement("tr");
  const names = Object.keys(methods);
  const order = { key: null, descending: false };
  const cellText = (column, value) =>
    typeof value !== "number" || Number.isNaN(value) ? "–" : column.percent ? (100 * value).toFixed(1) : value.toFixed(3);
  const body = document.createElement("tbody");
  const fill = () => {
    let rows = [...names];
    if (order.key) {
      rows.sort((a, b) => {
        const va = methods[a][order.key];
        const vb = methods[b][order.key];
        const missing = (v) => typeof v !== "number" || Number.isNaN(v);
        if (missing(va) || missing(vb)) return missing(va) - missing(vb);
        return order.descending ? vb - va : va - vb;
      });
    }
    body.replaceChildren();
    for (const name of rows) {
      const row = document.createElement("tr");
      const first = document.createElement("td");
      first.textContent = name;
      row.append(first);
      for (const [key, column] of keyed) {
        const cell = document.createElement("td");
        const value = methods[name][key];
        cell.textContent = cellText(column, value);
        if (column.better && typeof value === "number") {
          const values = names.map((n) => methods[n][key]).filter((v) => typeof v === "number" && !Number.isNaN(v));
          const best = column.better === "lower" ? Math.min(...values) : Math.max(...values);
          if (values.length > 1 && value === best) cell.className = "best";
        }
        row.append(cell);
      }
      body.append(row);
    }
  };
  const corner = document.createElement("th");
  corner.textContent = "method";
  head.append(corner);
  for (const [key, column] of keyed) {
    const cell = document.createElement("th");
    const arrow = column.better === "lower" ? " ↓" : column.better === "higher" ? " ↑" : "";
    cell.textContent = `${column.title}${arrow}`;
    cell.title = column.better ? `${column.better} is better; click to sort` : "click to sort";
    cell.addEventListener("click", () => {
      order.descending = order.key === key ? !order.descending : column.better !== "lower";
      order.key = key;
      for (const other of head.children) other.classList.remove("sorted");
      cell.classList.add("sorted");
      fill();
    });
    head.append(cell);
  }
  const thead = document.createElement("thead");
  thead.append(head);
  table.append(thead, body);
  fill();
  return table;
}

start().catch((error) => showError(`The page could not start: ${error.message}`));
