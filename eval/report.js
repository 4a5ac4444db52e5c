"use strict";
// report.html's script (eval/report.py inlines it): reads the JSON of #report-data and draws the page.
(function () {
  const TYPED = {Uint8Array, Uint16Array, Uint32Array, Int8Array, Float32Array, Float64Array};

  function base64Bytes(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const binary = atob(text), bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  // a column of the data: a JSON array, or {type, data} for a typed array in base64 (eval/report.py's packed)
  function column(x) {
    if (x === null || Array.isArray(x)) return x;
    const bytes = base64Bytes(x.data), Type = TYPED[x.type];
    return new Type(bytes.buffer, bytes.byteOffset, bytes.byteLength / Type.BYTES_PER_ELEMENT);
  }

  const D = JSON.parse(document.getElementById("report-data").textContent);
  for (const key of ["label", "start", "end", "code"]) D.det[key] = column(D.det[key]);
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLOURS = {true_positive: "#2ca02c", double_detection: "#9467bd", wrong_label: "#d62728",
    localization: "#ff7f0e", confusion: "#e377c2", background: "#7f7f7f", unscored: "#1f77b4"};
  const V = D.videos.id.length;
  const C = D.classes.length;
  const state = {sortKey: null, sortDir: 1, cls: -1, video: -1, det: -1, curves: {}};

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pct(x) { return x === null || x === undefined ? "\u2013" : (100 * x).toFixed(1); }
  function sec(x) { return x.toFixed(2); }

  function typeName(code) {
    if (code === null || code === undefined) return "no ground truth";
    if (code === -2) return "not scored (no class of the subset)";
    if (code === -1) return "not analysed (outside the top-G)";
    return code === 0 ? "true_positive" : D.fp_types[code - 1];
  }

  function colourOf(code) {
    return code === null || code < 0 ? COLOURS.unscored : COLOURS[typeName(code)];
  }

  // ------------------------------------------------------------------------------------- indices

  function buildIndex() {
    const gtOf = Array.from({length: V}, () => []);
    D.gt.video.forEach((v, k) => gtOf[v].push(k));
    const detCount = new Int32Array(V * C);
    for (let v = 0; v < V; v++) {
      for (let i = D.det.offset[v]; i < D.det.offset[v + 1]; i++) detCount[v * C + D.det.label[i]]++;
    }
    const gtHas = new Uint8Array(V * C);
    D.gt.video.forEach((v, k) => { gtHas[v * C + D.gt.label[k]] = 1; });
    const groupAp = new Map();
    if (D.groups) D.groups.video.forEach((v, g) => groupAp.set(v * C + D.groups.label[g], D.groups.ap[g]));
    const ignoredOf = new Map();
    D.ignored.video.forEach((v, k) => {
      if (!ignoredOf.has(v)) ignoredOf.set(v, []);
      ignoredOf.get(v).push(k);
    });
    const byId = new Map(D.videos.id.map((id, v) => [id, v]));
    return {gtOf, detCount, gtHas, groupAp, ignoredOf, byId};
  }
  const IX = buildIndex();

  function tiou(s0, e0, s1, e1) {
    const inter = Math.max(0, Math.min(e0, e1) - Math.max(s0, s1));
    const union = (e1 - s1) + (e0 - s0) - inter;
    return union !== 0 ? inter / union : 0;
  }

  function bestTiou(i, v) {
    let best = null;
    for (const k of IX.gtOf[v]) {
      if (D.gt.label[k] !== D.det.label[i]) continue;
      const t = tiou(D.det.start[i], D.det.end[i], D.gt.start[k], D.gt.end[k]);
      if (best === null || t > best) best = t;
    }
    return best;
  }

  // ------------------------------------------------------------------------------------ overview

  function section(id, heading) {
    const node = el("section", {id});
    node.append(el("h2", {}, heading));
    document.body.append(node);
    return node;
  }

  function table(head, rows, attrs) {
    const node = el("table", attrs);
    const tr = el("tr");
    head.forEach((h) => tr.append(el("th", {}, h)));
    const thead = el("thead");
    thead.append(tr);
    node.append(thead);
    const body = el("tbody");
    rows.forEach((row) => {
      const r = el("tr");
      row.forEach((cell) => r.append(el("td", {}, cell)));
      body.append(r);
    });
    node.append(body);
    return node;
  }

  function summary() {
    const m = D.metrics;
    const parts = [`${V} videos, ${D.det.label.length} detections, ${C} classes`];
    if (m) parts.push(`ground truth: subset "${m.subset}", ${D.gt.label.length} instances`);
    else parts.push("no ground truth: detections only");
    if (m && Object.keys(m.ignored).length) {
      parts.push("not scored: " + Object.entries(m.ignored).map(([k, n]) => `${n} "${k}" segments`).join(", "));
    }
    return el("p", {id: "summary"}, parts.join("; "));
  }

  function mapTables(node) {
    const m = D.metrics;
    const head = ["tIoU", ...m.tiou.map((t) => String(t)), ...m.averages.map((a) => a[0])];
    node.append(el("h3", {}, "mAP (%)"));
    node.append(table(head, [["mAP", ...m.mAP.map(pct), ...m.averages.map((a) => pct(a[1]))]], {id: "map-table"}));
    const rows = Object.entries(m.ap_per_class).map(([name, ap]) =>
      [name, ...ap.map(pct), pct(ap.reduce((a, b) => a + b, 0) / ap.length)]);
    node.append(el("h3", {}, "AP per class (%)"));
    const box = el("div", {class: "scroll"});
    box.append(table(["class", ...m.tiou.map((t) => String(t)), "AVG"], rows, {id: "class-ap"}));
    node.append(box);
  }

  function legend(names) {
    const node = el("div", {class: "legend"});
    names.forEach((name) => {
      const item = el("span");
      const text = name === "unscored" ? (D.metrics ? "not analysed / not scored" : "detection") : name.replace("_", " ");
      item.append(el("i", {style: `background:${COLOURS[name]}`}), document.createTextNode(text));
      node.append(item);
    });
    return node;
  }

  function fpChart(node) {
    const fp = D.fp;
    const kinds = ["true_positive", ...D.fp_types];
    const rows = [["all classes", {true_positive: fp.true_positive, ...fp.counts}], ...Object.entries(fp.per_class)];
    const total = (r) => kinds.reduce((sum, k) => sum + r[k], 0);
    const L = 170, W = 720, H = 16, GAP = 4;  // bars: shares of the row's predictions, count at the end
    const chart = svgEl("svg", {id: "fp-chart", width: W, height: rows.length * (H + GAP) + GAP});
    rows.forEach(([name, r], j) => {
      const y = GAP + j * (H + GAP);
      chart.append(svgEl("text", {x: 0, y: y + H - 4}, name.slice(0, 26)));
      let x = L;
      kinds.forEach((k) => {
        const w = (W - L - 50) * r[k] / Math.max(1, total(r));
        if (w <= 0) return;
        const bar = svgEl("rect", {x, y, width: w, height: H, fill: COLOURS[k], class: "fp-bar", "data-kind": k,
          "data-class": name, "data-n": r[k]});
        bar.append(svgEl("title", {}, `${name}: ${r[k]} ${k.replace("_", " ")} (${pct(r[k] / total(r))}%)`));
        chart.append(bar);
        x += w;
      });
      chart.append(svgEl("text", {x: W - 46, y: y + H - 4}, String(total(r))));
    });
    node.append(el("h3", {}, `False positives at tIoU ${fp.tiou} (DETAD, top ${fp.top_factor} \u00d7 N per class)`));
    node.append(el("p", {class: "note"}, `${fp.predictions} predictions analysed: ${fp.true_positive} true ` +
      `positives, ${fp.false_positive} false positives (` +
      D.fp_types.map((k) => `${k.replace("_", " ")} ${fp.counts[k]}`).join(", ") + ")"));
    node.append(legend(kinds), chart);
  }

  function settings(node) {
    const details = el("details", {id: "settings"});
    details.append(el("summary", {}, "Run settings"));
    const rows = Object.entries(D.settings || {}).map(([key, value]) =>
      [key, typeof value === "string" ? value : JSON.stringify(value, null, 1)]);
    details.append(rows.length ? table(["setting", "value"], rows, {class: "settings"}) :
      el("p", {class: "note"}, "none recorded"));
    node.append(details);
  }

  // -------------------------------------------------------------------------------- videos table

  // The table draws a window of at most WINDOW rows of its order (every row up to WINDOW videos), moved when a
  // scroll comes within EDGE rows of its ends; the table's top margin and a spacer under it stand for the rows
  // outside, so that the scroll bar is the whole table's.
  const WINDOW = 300, EDGE = 60;
  const view = {keys: [], rows: [], first: 0, last: 0, rowHeight: 0};

  function cellValue(key, v) {
    const c = state.cls;
    if (key === "id") return D.videos.id[v];
    if (key === "duration") return D.videos.duration[v];
    if (key === "n_det") return c < 0 ? D.videos.n_det[v] : IX.detCount[v * C + c];
    if (key === "ap") {
      const ap = c < 0 ? D.videos.ap[v] : IX.groupAp.get(v * C + c);
      return ap === undefined ? null : ap;
    }
    return D.videos.worst[v] < 0 ? null : D.fp_types[D.videos.worst[v]];
  }

  function visibleRows() {
    const c = state.cls, key = state.sortKey, dir = state.sortDir;
    let rows = Array.from({length: V}, (_, v) => v);
    if (c >= 0) rows = rows.filter((v) => IX.gtHas[v * C + c] || IX.detCount[v * C + c] > 0);
    if (key) {
      const value = new Array(V);
      for (const v of rows) value[v] = cellValue(key, v);
      rows.sort((a, b) => {
        const x = value[a], y = value[b];
        if (x === null || y === null) return x === y ? a - b : (x === null ? 1 : -1);  // empty cells last
        return x < y ? -dir : x > y ? dir : a - b;
      });
    }
    return rows;
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"]/g, (ch) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[ch]));
  }

  function cellText(key, v) {
    const x = cellValue(key, v);
    return key === "ap" ? pct(x) : key === "duration" ? x.toFixed(1) : x === null ? "\u2013" : x;
  }

  function rowHtml(v) {
    const cells = view.keys.map((key) => `<td>${escapeHtml(cellText(key, v))}</td>`);
    return `<tr data-v="${v}"${v === state.video ? ' class="selected"' : ""}>${cells.join("")}</tr>`;
  }

  function drawWindow(force) {
    const box = document.getElementById("video-box"), n = view.rows.length, h = view.rowHeight;
    let first = 0;
    if (n > WINDOW && h > 0) {
      const top = Math.floor(box.scrollTop / h), seen = Math.ceil(box.clientHeight / h);
      if (!force && Math.max(0, top - EDGE) >= view.first && Math.min(n, top + seen + EDGE) <= view.last) return;
      first = Math.min(Math.max(0, top - Math.floor((WINDOW - seen) / 2)), n - WINDOW);
    }
    const last = Math.min(n, first + WINDOW), body = document.querySelector("#video-table tbody");
    body.innerHTML = view.rows.slice(first, last).map(rowHtml).join("");
    if (!h && last > first) {  // every row is one line high: measured once
      view.rowHeight = (body.lastChild.getBoundingClientRect().bottom - body.firstChild.getBoundingClientRect().top) /
        (last - first);
    }
    Object.assign(view, {first, last});
    document.getElementById("video-table").style.marginTop = `${first * view.rowHeight}px`;
    document.getElementById("video-after").style.height = `${(n - last) * view.rowHeight}px`;
  }

  function renderRows() {
    view.rows = visibleRows();
    drawWindow(true);
    document.getElementById("row-count").textContent = ` ${view.rows.length} of ${V} videos`;
    document.querySelectorAll("#video-table th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && state.sortDir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && state.sortDir < 0);
    });
    return view.rows;
  }

  function scrollToRow(v) {  // the row of video v in the middle of the table's box, if the order has it
    const at = view.rows.indexOf(v), box = document.getElementById("video-box");
    if (at < 0 || !view.rowHeight) return;
    box.scrollTop = Math.max(0, (at + 0.5) * view.rowHeight - box.clientHeight / 2);
    drawWindow(false);
  }

  function sortBy(key) {
    state.sortDir = state.sortKey === key ? -state.sortDir : 1;
    state.sortKey = key;
    renderRows();
  }

  function widest(key) {  // characters of the longest text of a column (its width stays as the window moves)
    let most = 0;
    for (let v = 0; v < V; v++) most = Math.max(most, String(cellText(key, v)).length);
    return most;
  }

  function videoSection() {
    const node = section("videos", "Videos");
    const controls = el("p");
    const select = el("select", {id: "class-filter"});
    select.append(el("option", {value: "-1"}, "all classes"));
    D.classes.forEach((name, c) => select.append(el("option", {value: String(c)}, name)));
    select.addEventListener("change", () => { state.cls = Number(select.value); renderRows(); });
    controls.append("Class: ", select, el("span", {id: "row-count", class: "note"}));
    node.append(controls, el("p", {class: "note"}, D.metrics ?
      `AP@${D.video_tiou}: mean over the classes annotated in the video of the AP of its own detections ` +
      "(with a class chosen: that class's); worst error: its most frequent false-positive type. Click a header " +
      "to sort, a row to show the video." : "Click a header to sort, a row to show the video."));
    const columns = [["id", "video"], ["duration", "length (s)"], ["n_det", "detections"]];
    if (D.metrics) columns.push(["ap", `AP@${D.video_tiou} (%)`], ["worst", "worst error"]);
    view.keys = columns.map(([key]) => key);
    const head = el("tr");
    columns.forEach(([key, label]) => {
      const th = el("th", {"data-key": key}, label);
      if (key === "id" || key === "worst") th.style.minWidth = `${widest(key)}ch`;
      th.addEventListener("click", () => sortBy(key));
      head.append(th);
    });
    const tbl = el("table", {id: "video-table"});
    tbl.append(el("thead"), el("tbody"));
    tbl.firstChild.append(head);
    tbl.lastChild.addEventListener("click", (event) => {
      const row = event.target.closest("tr");
      if (row) openVideo(Number(row.dataset.v));
    });
    const box = el("div", {class: "scroll", id: "video-box"});
    box.append(tbl, el("div", {id: "video-after"}));
    box.addEventListener("scroll", () => drawWindow(false));
    node.append(box);
    return renderRows();
  }

  // ---------------------------------------------------------------------------------- one video

  const ROW = 30, LEFT = 220, RIGHT = 12, CURVE = 46, CURVE_GAP = 8, AXIS = 24;

  function decodeCurves(v) {
    const entry = D.curves[String(v)];
    if (!entry) return [];
    if (!state.curves[v]) {
      const bytes = Uint8Array.from(atob(entry.data), (ch) => ch.charCodeAt(0));
      let at = 0;
      state.curves[v] = entry.names.map((name, j) => {
        const q = bytes.subarray(at, at + entry.length[j]);
        at += entry.length[j];
        return {name, q, lo: entry.lo[j], hi: entry.hi[j], sps: entry.seconds_per_sample};
      });
    }
    return state.curves[v];
  }

  function niceStep(span) {
    const raw = span / 8, power = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / power;
    return power * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
  }

  function drawAxis(s, y, dur, x) {
    s.append(svgEl("line", {x1: x(0), x2: x(dur), y1: y + 2, y2: y + 2, stroke: "#999"}));
    const step = niceStep(dur);
    for (let k = 0; k * step <= dur + 1e-9; k++) {
      const t = k * step;
      s.append(svgEl("line", {x1: x(t), x2: x(t), y1: y + 2, y2: y + 7, stroke: "#999"}));
      s.append(svgEl("text", {x: x(t), y: y + 19, "text-anchor": "middle"}, `${+t.toFixed(3)} s`));
    }
  }

  function drawRow(s, v, c, y, x, range) {
    s.append(svgEl("rect", {x: x(0), y: y + 1, width: x(Infinity) - x(0), height: ROW - 2, fill: "#f5f5f5"}));
    s.append(svgEl("text", {x: 4, y: y + ROW / 2 + 4}, D.classes[c].slice(0, 32)));
    for (const k of IX.gtOf[v]) {
      if (D.gt.label[k] !== c) continue;
      const x0 = x(D.gt.start[k]);
      s.append(svgEl("rect", {class: "gt", x: x0, y: y + 3, width: Math.max(1, x(D.gt.end[k]) - x0), height: 9,
        "data-k": k}));
    }
    const dets = [];
    for (let i = D.det.offset[v]; i < D.det.offset[v + 1]; i++) if (D.det.label[i] === c) dets.push(i);
    dets.sort((a, b) => D.det.score[a] - D.det.score[b]);  // the best drawn last, on top
    const [lo, hi] = range;
    for (const i of dets) {
      const x0 = x(D.det.start[i]);
      const code = D.det.code ? D.det.code[i] : null;
      s.append(svgEl("rect", {class: "det", x: x0, y: y + 14, width: Math.max(1, x(D.det.end[i]) - x0), height: 13,
        fill: colourOf(code), "fill-opacity": hi > lo ? (0.15 + 0.85 * (D.det.score[i] - lo) / (hi - lo)).toFixed(3) : 1,
        "data-i": i}));
    }
  }

  function drawIgnoredRow(s, v, l, y, x) {  // the video's spans of one label that is not scored ("Ambiguous")
    s.append(svgEl("rect", {x: x(0), y: y + 1, width: x(Infinity) - x(0), height: ROW - 2, fill: "#f5f5f5"}));
    s.append(svgEl("text", {x: 4, y: y + ROW / 2 + 4}, `${D.ignored.names[l]} (not scored)`.slice(0, 32)));
    for (const k of IX.ignoredOf.get(v)) {
      if (D.ignored.label[k] !== l) continue;
      const x0 = x(D.ignored.start[k]);
      s.append(svgEl("rect", {class: "ignored", x: x0, y: y + 3, width: Math.max(1, x(D.ignored.end[k]) - x0),
        height: ROW - 6, "data-k": k}));
    }
  }

  function hatch() {  // the fill of the spans that are not scored
    const defs = svgEl("defs"), pattern = svgEl("pattern", {id: "hatch", width: 6, height: 6,
      patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)"});
    pattern.append(svgEl("rect", {width: 2, height: 6, fill: "#8c8c8c"}));
    defs.append(pattern);
    return defs;
  }

  function drawCurve(s, curve, y, x) {
    s.append(svgEl("rect", {x: x(0), y, width: x(Infinity) - x(0), height: CURVE, fill: "#fafafa", stroke: "#e4e4e4"}));
    s.append(svgEl("text", {x: 4, y: y + 14}, curve.name.slice(0, 36)));
    s.append(svgEl("text", {x: 4, y: y + 30, class: "note"}, `${curve.lo.toPrecision(3)} .. ${curve.hi.toPrecision(3)}`));
    const points = new Array(curve.q.length);
    for (let i = 0; i < curve.q.length; i++) {
      points[i] = `${x((i + 0.5) * curve.sps).toFixed(1)},${(y + CURVE - (curve.q[i] / 255) * CURVE).toFixed(1)}`;
    }
    s.append(svgEl("polyline", {class: "curve", points: points.join(" ")}));
  }

  function drawTimeline(v) {
    const box = document.getElementById("timeline-box");
    const W = Math.max(640, box.clientWidth);
    const dur = Math.max(D.videos.duration[v], 1e-6);
    const x = (t) => LEFT + (W - LEFT - RIGHT) * Math.min(Math.max(t / dur, 0), 1);
    const classes = [];
    for (let c = 0; c < C; c++) if (IX.gtHas[v * C + c] || IX.detCount[v * C + c]) classes.push(c);
    const ignored = [...new Set((IX.ignoredOf.get(v) || []).map((k) => D.ignored.label[k]))].sort((a, b) => a - b);
    const curves = decodeCurves(v);
    const axisY = (ignored.length + classes.length) * ROW;
    const height = axisY + AXIS + curves.length * (CURVE + CURVE_GAP);
    const s = svgEl("svg", {id: "timeline", width: W, height});
    let lo = Infinity, hi = -Infinity;
    for (let i = D.det.offset[v]; i < D.det.offset[v + 1]; i++) {
      lo = Math.min(lo, D.det.score[i]);
      hi = Math.max(hi, D.det.score[i]);
    }
    if (ignored.length) s.append(hatch());
    ignored.forEach((l, j) => drawIgnoredRow(s, v, l, j * ROW, x));
    classes.forEach((c, j) => drawRow(s, v, c, (ignored.length + j) * ROW, x, [lo, hi]));
    drawAxis(s, axisY, dur, x);
    curves.forEach((curve, j) => drawCurve(s, curve, axisY + AXIS + j * (CURVE + CURVE_GAP), x));
    s.append(svgEl("line", {class: "playhead", id: "playhead", x1: -10, x2: -10, y1: 0, y2: height}));
    box.replaceChildren(s);
    state.x = x;
    state.t = (px) => Math.min(Math.max((px - LEFT) / (W - LEFT - RIGHT), 0), 1) * dur;
  }

  function setPlayhead(t) {
    const line = document.getElementById("playhead");
    if (!line) return;
    line.setAttribute("x1", state.x(t));
    line.setAttribute("x2", state.x(t));
    line.dataset.t = t;
  }

  function mediaError(video) {
    const names = ["aborted", "network error", "cannot decode it", "format or file not supported"];
    return video.error ? names[video.error.code - 1] || "error" : "error";
  }

  function drawPlayer(v) {
    const box = document.getElementById("player");
    box.replaceChildren();
    const src = D.videos.media[v];
    if (!src) return;
    const video = el("video", {id: "player-video", controls: "", preload: "metadata", src});
    video.addEventListener("error", () => {
      video.style.display = "none";
      box.append(el("p", {class: "warn", id: "player-error"},
        `This browser cannot play ${decodeURI(src)} (${mediaError(video)}); the timeline below still works.`));
    });
    const follow = () => {
      setPlayhead(video.currentTime);
      if (!video.paused && !video.ended) requestAnimationFrame(follow);
    };
    ["play", "seeked", "timeupdate"].forEach((name) => video.addEventListener(name, () => setPlayhead(video.currentTime)));
    video.addEventListener("play", () => requestAnimationFrame(follow));
    box.append(video);
  }

  function detText(i) {
    const v = state.video, best = bestTiou(i, v);
    return `${D.classes[D.det.label[i]]}\nstart ${sec(D.det.start[i])} s, end ${sec(D.det.end[i])} s\n` +
      `score ${D.det.score[i].toFixed(4)}\nbest tIoU ${best === null ? "\u2013 (no ground truth of this class)" :
      best.toFixed(3)}\n${typeName(D.det.code ? D.det.code[i] : null)}`;
  }

  function seek(t) {
    const video = document.getElementById("player-video");
    if (video) video.currentTime = t;
    setPlayhead(t);
  }

  function selectDet(i) {
    state.det = i;
    document.querySelectorAll("#timeline .det.selected").forEach((r) => r.classList.remove("selected"));
    const rect = document.querySelector(`#timeline .det[data-i="${i}"]`);
    if (rect) rect.classList.add("selected");
    document.getElementById("det-info").textContent = detText(i).replace(/\n/g, "; ");
    seek(D.det.start[i]);
  }

  function showTip(event, text) {
    const tip = document.getElementById("tip");
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = `${Math.max(0, Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8))}px`;
    tip.style.top = `${Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8)}px`;
  }

  function onTimelineMove(event) {
    const target = event.target;
    if (target.classList.contains("det")) showTip(event, detText(Number(target.dataset.i)));
    else if (target.classList.contains("gt")) {
      const k = Number(target.dataset.k);
      showTip(event, `ground truth ${D.classes[D.gt.label[k]]}\nstart ${sec(D.gt.start[k])} s, end ${sec(D.gt.end[k])} s`);
    } else if (target.classList.contains("ignored")) {
      const k = Number(target.dataset.k);
      showTip(event, `${D.ignored.names[D.ignored.label[k]]} (not scored by the evaluation)\nstart ` +
        `${sec(D.ignored.start[k])} s, end ${sec(D.ignored.end[k])} s`);
    } else document.getElementById("tip").style.display = "none";
  }

  function onTimelineClick(event) {
    if (state.video < 0 || !state.t) return;
    if (event.target.classList.contains("det")) selectDet(Number(event.target.dataset.i));
    else {
      const box = event.currentTarget.getBoundingClientRect();
      seek(state.t(event.clientX - box.left));
    }
  }

  function videoView() {
    const node = section("video", "Video");
    node.append(el("p", {id: "hash-note", class: "warn", hidden: ""}));
    node.append(el("p", {id: "video-title", class: "note"}, "Click a video in the table."), el("div", {id: "player"}));
    node.append(legend(D.metrics ? ["true_positive", ...D.fp_types, "unscored"] : ["unscored"]));
    node.append(el("p", {class: "note"}, "Grey bars: ground truth; coloured bars: detections, opacity by score" +
      (D.metrics ? `, colour by what they are at tIoU ${D.video_tiou}` : "") +
      (D.ignored.video.length ? `; hatched: ${D.ignored.names.join(", ")} spans of the ground truth, not scored` : "") +
      ". Hover for details; click a detection (or the timeline) to seek."));
    const box = el("div", {id: "timeline-box"});
    box.addEventListener("mousemove", onTimelineMove);
    box.addEventListener("mouseleave", () => { document.getElementById("tip").style.display = "none"; });
    box.addEventListener("click", onTimelineClick);
    node.append(box, el("div", {id: "det-info"}));
    document.body.append(el("div", {id: "tip"}));
  }

  function selectVideo(v) {
    state.video = v;
    state.det = -1;
    document.querySelectorAll("#video-table tbody tr").forEach((tr) =>
      tr.classList.toggle("selected", Number(tr.dataset.v) === v));
    const n = D.videos.n_det[v];
    const ap = D.videos.ap ? `, AP@${D.video_tiou} ${pct(D.videos.ap[v])}%` : "";
    document.getElementById("video-title").textContent =
      `${D.videos.id[v]}: ${D.videos.duration[v].toFixed(1)} s, ${n} detections${ap}`;
    document.getElementById("det-info").textContent = "";
    drawPlayer(v);
    drawTimeline(v);
  }

  function openVideo(v) {  // a video opened by a click: its link (report.html#VIDEO_ID) becomes the page's URL
    selectVideo(v);
    const hash = `#${encodeURIComponent(D.videos.id[v])}`;
    if (location.hash === hash) return;
    try {
      history.replaceState(null, "", hash);
    } catch (err) {  // a browser that keeps file: pages from rewriting their URL: a fragment navigation
      location.replace(hash);
    }
  }

  function followHash() {  // open the video the URL's hash names; its index, -1 without a hash, null if unknown
    if (location.hash.length <= 1) return -1;
    let id = location.hash.slice(1);
    try {
      id = decodeURIComponent(id);
    } catch (err) { /* not percent-encoded: the id as written */ }
    const v = IX.byId.has(id) ? IX.byId.get(id) : null;
    const note = document.getElementById("hash-note");
    note.hidden = v !== null;
    note.textContent = v === null ? `This report has no video "${id}" (the address's #${id}).` : "";
    if (v !== null && v !== state.video) {
      selectVideo(v);
      scrollToRow(v);
      document.getElementById("video").scrollIntoView();
    }
    return v;
  }

  function main() {
    document.body.append(summary());
    const overview = section("overview", "Overview");
    const columns = el("div", {class: "columns"});
    const left = el("div"), right = el("div");
    columns.append(left, right);
    overview.append(columns);
    if (D.metrics) mapTables(left);
    if (D.fp) fpChart(right);
    settings(overview);
    const rows = videoSection();
    videoView();
    const linked = followHash();
    if ((linked === -1 || linked === null) && rows.length) selectVideo(rows[0]);
    window.addEventListener("hashchange", followHash);
    window.reportReadyMs = performance.now();  // since navigation start: the page's load time
    window.reportReady = true;
    document.body.setAttribute("data-ready", "1");
    // since navigation start: the first frame drawn after the script (the page as first shown)
    requestAnimationFrame(() => setTimeout(() => { window.reportShownMs = performance.now(); }, 0));
  }

  main();
}());
