// annosim replay viewer: reads the JSON in #viewer-data (see annosim/report/viewer_data.py for
// the encodings), draws every pane at the shared slice and round, and keeps its own state in
// #viewer-state (JSON) so that a script (or a test) can read what is shown.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("viewer-data").textContent);
  const COLORS = DATA.colors;
  const WIDE = DATA.wide_range;
  const panes = DATA.panes;
  const nz = panes[0].shape[0];
  const maxRound = Math.max(...panes.map(p => p.max_rounds));
  const state = {slice: 0, round: maxRound, window: {name: "abdomen", level: 40, width: 400},
                 showTruth: true, showPred: true, fill: false, earlier: true, ready: false, panes: []};

  const $ = id => document.getElementById(id);
  const slider = $("slice"), roundSel = $("round"), winSel = $("window"), levelIn = $("level"),
        widthIn = $("width");

  // -- decoding ------------------------------------------------------------------------------
  function rleDecode(runs, n) {
    const out = new Uint8Array(n);
    let pos = 0;
    for (let i = 0; i < runs.length; i++) {
      if (i % 2) out.fill(1, pos, pos + runs[i]);
      pos += runs[i];
    }
    return out;
  }
  const maskCache = new Map();
  function mask(pane, key, z) {
    const ck = pane.index + "/" + key + "/" + z;
    if (!maskCache.has(ck)) {
      const vol = key === "truth" ? pane.truth : (pane.predictions[key] || null);
      const n = pane.shape[1] * pane.shape[2];
      maskCache.set(ck, vol ? rleDecode(vol[z], n) : new Uint8Array(n));
      if (maskCache.size > 256) maskCache.delete(maskCache.keys().next().value);
    }
    return maskCache.get(ck);
  }
  const grayCache = new Map();
  function gray(pane, source, z) {  // Promise of the slice's 8-bit values (Uint8ClampedArray RGBA)
    const ck = pane.index + "/" + source + "/" + z;
    if (grayCache.has(ck)) return grayCache.get(ck);
    const p = new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        const c = document.createElement("canvas");
        c.width = pane.shape[2]; c.height = pane.shape[1];
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        resolve(g.getImageData(0, 0, c.width, c.height).data);
      };
      img.onerror = reject;
      img.src = "data:image/webp;base64," + pane.ct[source][z];
    });
    grayCache.set(ck, p);
    if (grayCache.size > 64) grayCache.delete(grayCache.keys().next().value);
    return p;
  }

  // -- per-slice statistics computed from the masks ----------------------------------------------
  function effectiveRound(pane) {  // an object that stopped early keeps its last prediction
    let r = 0;
    for (const row of pane.rounds) if (row.round <= state.round) r = row.round;
    return r || (pane.rounds.length ? pane.rounds[0].round : 1);
  }
  function sliceStats(pane, r) {
    const ck = pane.index + "/stats/" + r;
    if (maskCache.has(ck)) return maskCache.get(ck);
    const out = {dice: [], overTracked: [], missed: []};
    for (let z = 0; z < nz; z++) {
      const t = mask(pane, "truth", z), p = mask(pane, String(r), z);
      let nt = 0, np = 0, both = 0;
      for (let i = 0; i < t.length; i++) { nt += t[i]; np += p[i]; both += t[i] & p[i]; }
      out.dice.push(nt + np ? 2 * both / (nt + np) : null);
      if (np && !nt) out.overTracked.push(z);
      if (nt && !np) out.missed.push(z);
    }
    maskCache.set(ck, out);
    return out;
  }

  // -- drawing -------------------------------------------------------------------------------------
  function hex(c) { return [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)); }
  function blend(px, i, rgb, a) {
    px[i] = px[i] * (1 - a) + rgb[0] * a; px[i + 1] = px[i + 1] * (1 - a) + rgb[1] * a;
    px[i + 2] = px[i + 2] * (1 - a) + rgb[2] * a;
  }
  function overlay(px, m, ny, nx, rgb) {  // outline (or fill) of a mask into RGBA pixels
    let count = 0;
    for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++) {
      const i = y * nx + x;
      if (!m[i]) continue;
      const edge = y === 0 || x === 0 || y === ny - 1 || x === nx - 1 || !m[i - 1] || !m[i + 1] ||
                   !m[i - nx] || !m[i + nx];
      if (edge) { blend(px, 4 * i, rgb, 1); count++; }
      else if (state.fill) blend(px, 4 * i, rgb, 0.35);
    }
    return count;
  }
  function windowed(src, source) {  // Uint8Array of display grey levels from decoded RGBA
    const n = src.length / 4, out = new Uint8ClampedArray(n);
    if (source === "abdomen") { for (let i = 0; i < n; i++) out[i] = src[4 * i]; return out; }
    const lo = state.window.level - state.window.width / 2, w = state.window.width;
    const step = (WIDE[1] - WIDE[0]) / 255;
    for (let i = 0; i < n; i++) out[i] = ((WIDE[0] + src[4 * i] * step) - lo) / w * 255;
    return out;
  }

  async function renderPane(pane, ticket) {
    const z = state.slice, r = effectiveRound(pane);
    const [ny, nx] = [pane.shape[1], pane.shape[2]];
    const source = state.window.name === "abdomen" ? "abdomen" : "wide";
    const raw = await gray(pane, source, z);
    if (ticket !== pending) return null;  // a newer render owns the canvas
    const g = windowed(raw, source);
    const base = document.createElement("canvas");
    base.width = nx; base.height = ny;
    const bctx = base.getContext("2d");
    const img = bctx.createImageData(nx, ny);
    for (let i = 0; i < g.length; i++) {
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g[i]; img.data[4 * i + 3] = 255;
    }
    const info = {heading: pane.heading, round: r, carried: r !== state.round, shownPrompts: [],
                  truthOutline: 0, predOutline: 0};
    if (state.showTruth) info.truthOutline = overlay(img.data, mask(pane, "truth", z), ny, nx, hex(COLORS.truth));
    if (state.showPred) info.predOutline = overlay(img.data, mask(pane, String(r), z), ny, nx, hex(COLORS.prediction));
    bctx.putImageData(img, 0, 0);
    const canvas = pane.canvas, ctx = canvas.getContext("2d"), s = pane.scale;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(base, 0, 0, nx * s, ny * s);
    for (const p of pane.prompts) {
      if (p.z !== z || p.round > r || (p.round < r && !state.earlier)) continue;
      ctx.globalAlpha = p.round === r ? 1 : 0.4;
      if (p.kind === "point") {
        const cx = (p.x + 0.5) * s, cy = (p.y + 0.5) * s;
        ctx.fillStyle = p.positive ? COLORS.positive : COLORS.negative;
        ctx.strokeStyle = "#000000"; ctx.lineWidth = 1;
        ctx.beginPath();
        if (p.positive) ctx.arc(cx, cy, 5, 0, 2 * Math.PI); else ctx.rect(cx - 5, cy - 5, 10, 10);
        ctx.fill(); ctx.stroke();
      } else if (p.kind === "box") {
        ctx.strokeStyle = COLORS.box; ctx.lineWidth = 2;
        ctx.strokeRect(p.x0 * s, p.y0 * s, (p.x1 - p.x0 + 1) * s, (p.y1 - p.y0 + 1) * s);
      }
      ctx.globalAlpha = 1;
      info.shownPrompts.push(Object.assign({dimmed: p.round !== r}, p));
    }
    const st = sliceStats(pane, r);
    Object.assign(info, {sliceDice: st.dice, overTracked: st.overTracked, missed: st.missed});
    drawStrip(pane, st);
    drawPanel(pane, r);
    const rect = canvas.getBoundingClientRect();
    info.canvas = {left: rect.left + window.scrollX, top: rect.top + window.scrollY, scale: s};
    return info;
  }

  function drawStrip(pane, st) {
    const c = pane.strip, ctx = c.getContext("2d"), w = pane.cell;
    const frames = new Set(pane.frames), over = new Set(st.overTracked), miss = new Set(st.missed);
    ctx.fillStyle = "#000000"; ctx.fillRect(0, 0, c.width, c.height);
    for (let z = 0; z < nz; z++) {
      let col;
      if (!frames.has(z)) col = COLORS.outside;
      else if (over.has(z)) col = COLORS.prediction;
      else if (miss.has(z)) col = COLORS.missed;
      else if (st.dice[z] === null) col = COLORS.empty;
      else col = "hsl(" + Math.round(120 * st.dice[z]) + ",80%,40%)";
      ctx.fillStyle = col; ctx.fillRect(z * w, 0, w, 14);
    }
    ctx.fillStyle = "#ffffff"; ctx.fillRect(state.slice * w, 15, w, 5);
  }

  function drawPanel(pane, r) {
    const rows = pane.rounds.map(row => {
      const cells = [row.round].concat(pane.metrics.map(m => m in row ? Number(row[m]).toFixed(3) : "-"));
      cells.push(row.clicks === undefined ? "-" : row.clicks);
      const cls = row.round === r ? ' class="current"' : "";
      return "<tr" + cls + ">" + cells.map(v => "<td>" + v + "</td>").join("") + "</tr>";
    });
    const head = "<tr><th>round</th>" + pane.metrics.map(m => "<th>" + esc(m) + "</th>").join("") +
                 "<th>clicks</th></tr>";
    const prompts = pane.prompts.filter(p => p.round === r).map(p => "<li>" + describe(p) + "</li>");
    pane.panel.innerHTML = "<table>" + head + rows.join("") + "</table><h4>prompts of round " + r + "</h4><ul>" +
                           (prompts.join("") || "<li>none</li>") + "</ul>";
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
  function describe(p) {
    if (p.kind === "point") return (p.positive ? "positive" : "negative") + " click z=" + p.z + " (y, x)=(" + p.y + ", " + p.x + ")";
    if (p.kind === "box") return "box z=" + p.z + " (" + p.y0 + ", " + p.x0 + ")-(" + p.y1 + ", " + p.x1 + ")";
    return esc(p.kind) + " z=" + p.z;
  }

  let pending = 0;
  async function render() {
    const ticket = ++pending;
    state.ready = false;
    $("slice-label").textContent = "slice " + state.slice + " / " + (nz - 1);
    const infos = await Promise.all(panes.map(p => renderPane(p, ticket)));
    if (ticket !== pending) return;
    state.panes = infos;
    state.ready = true;
    $("viewer-state").textContent = JSON.stringify(state);
  }

  // -- controls ------------------------------------------------------------------------------------
  function setSlice(z) { state.slice = Math.max(0, Math.min(nz - 1, z)); slider.value = state.slice; render(); }
  slider.max = nz - 1;
  slider.addEventListener("input", () => setSlice(parseInt(slider.value, 10)));
  for (let r = 1; r <= maxRound; r++) roundSel.add(new Option("round " + r, String(r)));
  roundSel.value = String(maxRound);
  roundSel.addEventListener("change", () => {
    const r = parseInt(roundSel.value, 10);
    if (r >= 1 && r <= maxRound) state.round = r; else roundSel.value = String(state.round);
    render();
  });
  function applyWindow() {
    const name = winSel.value;
    if (name !== "custom") { levelIn.value = DATA.windows[name][0]; widthIn.value = DATA.windows[name][1]; }
    state.window = {name: name, level: parseFloat(levelIn.value), width: Math.max(1, parseFloat(widthIn.value))};
    render();
  }
  winSel.addEventListener("change", applyWindow);
  for (const el of [levelIn, widthIn]) el.addEventListener("change", () => { winSel.value = "custom"; applyWindow(); });
  for (const [id, key] of [["show-truth", "showTruth"], ["show-pred", "showPred"], ["fill", "fill"], ["earlier", "earlier"]]) {
    $(id).checked = state[key];
    $(id).addEventListener("change", () => { state[key] = $(id).checked; render(); });
  }
  document.addEventListener("keydown", e => {
    if (e.target.tagName === "INPUT" && e.target.type !== "range") return;
    if (e.key === "ArrowUp" || e.key === "ArrowRight") { setSlice(state.slice + 1); e.preventDefault(); }
    if (e.key === "ArrowDown" || e.key === "ArrowLeft") { setSlice(state.slice - 1); e.preventDefault(); }
  });

  const host = $("panes");
  panes.forEach((pane, i) => {
    pane.index = i;
    const [ny, nx] = [pane.shape[1], pane.shape[2]];
    pane.scale = Math.max(ny, nx) <= 512 ? Math.max(1, Math.floor(512 / Math.max(ny, nx))) : 512 / Math.max(ny, nx);
    pane.cell = Math.max(2, Math.floor(512 / nz));
    const div = document.createElement("div");
    div.className = "pane";
    div.innerHTML = "<h3></h3><canvas class='view'></canvas><canvas class='strip'></canvas><div class='panel'></div>";
    div.querySelector("h3").textContent = pane.heading;
    pane.canvas = div.querySelector("canvas.view");
    pane.canvas.width = Math.round(nx * pane.scale); pane.canvas.height = Math.round(ny * pane.scale);
    pane.strip = div.querySelector("canvas.strip");
    pane.strip.width = pane.cell * nz; pane.strip.height = 20;
    pane.strip.addEventListener("click", e => setSlice(Math.floor(e.offsetX / pane.cell)));
    pane.panel = div.querySelector(".panel");
    pane.canvas.addEventListener("wheel", e => { setSlice(state.slice + (e.deltaY > 0 ? 1 : -1)); e.preventDefault(); },
                                 {passive: false});
    host.appendChild(div);
  });

  // Initial view: the hash (#slice=Z&round=R&window=lung&level=L&width=W&fill=1&truth=0&pred=0&earlier=0)
  // goes through the same controls a person uses; otherwise the slice with the most truth.
  const hash = new URLSearchParams(location.hash.slice(1));
  const counts = panes[0].truth.map(runs => runs.filter((_, i) => i % 2).reduce((a, b) => a + b, 0));
  state.slice = counts.indexOf(Math.max(...counts));
  slider.value = state.slice;
  for (const [k, id] of [["truth", "show-truth"], ["pred", "show-pred"], ["fill", "fill"], ["earlier", "earlier"]]) {
    if (hash.has(k)) { $(id).checked = hash.get(k) === "1"; $(id).dispatchEvent(new Event("change")); }
  }
  if (hash.has("level") || hash.has("width")) {
    if (hash.has("level")) levelIn.value = hash.get("level");
    if (hash.has("width")) widthIn.value = hash.get("width");
    levelIn.dispatchEvent(new Event("change"));
  } else if (hash.has("window")) { winSel.value = hash.get("window"); winSel.dispatchEvent(new Event("change")); }
  if (hash.has("round")) { roundSel.value = hash.get("round"); roundSel.dispatchEvent(new Event("change")); }
  if (hash.has("slice")) { slider.value = hash.get("slice"); slider.dispatchEvent(new Event("input")); }
  render();
})();
