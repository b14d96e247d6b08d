// The head explorer of the mtlheads book (mtlheads.explorer.page_html inlines this file).
// Plain JavaScript, no library, nothing fetched: the data is the JSON in the page.
function mhExplorer(id) {
  "use strict";
  const root = document.getElementById(id);
  const data = JSON.parse(document.getElementById(id + "-data").textContent);
  const L = data.layers, H = data.heads;
  const svgNS = "http://www.w3.org/2000/svg";
  const decode = (text, scale) => Array.from(atob(text), (c) => (c.charCodeAt(0) / 255) * scale);
  const cache = new Map();
  const attention = (m, s) => {
    const key = m + "/" + s;
    if (!cache.has(key)) cache.set(key, decode(data.models[m].attention[s], 1));
    return cache.get(key);
  };
  const state = { model: 0, sentence: 0, layer: Math.floor(L / 2), head: 0, view: "matrix", colour: "shared" };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  function select(label, name, options) {
    const wrap = el("label", { class: "mh-control" }, label + " ");
    const box = el("select", { name: name, "aria-label": label });
    options.forEach(([value, text]) => box.appendChild(el("option", { value: String(value) }, text)));
    box.value = String(state[name]);
    box.addEventListener("change", () => {
      state[name] = isNaN(Number(box.value)) ? box.value : Number(box.value);
      draw();
    });
    wrap.appendChild(box);
    return wrap;
  }
  const range = (n) => Array.from({ length: n }, (_, i) => i);
  const gateNames = Object.keys(data.gates);

  const controls = el("div", { class: "mh-controls" });
  controls.append(
    select("model", "model", data.models.map((m, i) => [i, m.name])),
    select("sentence", "sentence", data.sentences.map((s, i) => [i, s.slice(1).join(" ")])),
    select("layer", "layer", range(L).map((i) => [i, String(i + 1)])),
    select("head", "head", range(H).map((i) => [i, String(i + 1)])),
    select("view", "view", [["matrix", "matrix"], ["arcs", "arcs"]]),
    select("grid colour", "colour", [["shared", "shared heads"], ...gateNames.map((g) => [g, "gate survival: " + g])])
  );
  const body = el("div", { class: "mh-body" });
  const grid = el("div", { class: "mh-grid", role: "grid", "aria-label": "heads: click one" });
  const view = el("div", { class: "mh-view", "aria-live": "polite" });
  const info = el("div", { class: "mh-info" });
  body.append(grid, view);
  root.replaceChildren(controls, body, info);

  function drawGrid() {
    grid.replaceChildren();
    const table = el("table");
    const head = el("tr");
    head.appendChild(el("th", {}, "layer \\ head"));
    range(H).forEach((h) => head.appendChild(el("th", {}, String(h + 1))));
    table.appendChild(head);
    for (let l = 0; l < L; l++) {
      const row = el("tr");
      row.appendChild(el("th", {}, String(l + 1)));
      for (let h = 0; h < H; h++) {
        const value = state.colour === "shared" ? data.shared[l * H + h] : data.gates[state.colour][l * H + h];
        const cell = el("td", { title: `layer ${l + 1}, head ${h + 1}: ${value}`, "data-layer": l, "data-head": h });
        cell.style.background = `rgba(0, 114, 178, ${0.08 + 0.92 * value})`;
        if (l === state.layer && h === state.head) cell.className = "mh-selected";
        cell.addEventListener("click", () => {
          state.layer = l;
          state.head = h;
          root.querySelector('select[name="layer"]').value = String(l);
          root.querySelector('select[name="head"]').value = String(h);
          draw();
        });
        row.appendChild(cell);
      }
      table.appendChild(row);
    }
    grid.appendChild(table);
  }

  function weights() {
    const words = data.sentences[state.sentence];
    const n = words.length, flat = attention(state.model, state.sentence);
    const offset = (state.layer * H + state.head) * n * n;
    return { words, n, at: (i, j) => flat[offset + i * n + j] };
  }

  function drawMatrix() {
    const { words, n, at } = weights();
    const cell = 22, pad = 80;
    const out = svg("svg", { width: pad + n * cell, height: pad + n * cell, class: "mh-svg",
                             role: "img", "aria-label": "attention matrix: rows attend to columns" });
    for (let i = 0; i < n; i++) {
      const row = svg("text", { x: pad - 4, y: pad + i * cell + cell * 0.7, "text-anchor": "end" });
      row.textContent = words[i];
      const col = svg("text", { transform: `translate(${pad + i * cell + cell * 0.7},${pad - 4}) rotate(-60)` });
      col.textContent = words[i];
      out.append(row, col);
      for (let k = 0; k < n; k++) {
        const w = at(i, k);
        const rect = svg("rect", { x: pad + k * cell, y: pad + i * cell, width: cell - 1, height: cell - 1,
                                   fill: "#0072b2", "fill-opacity": (0.03 + 0.97 * w).toFixed(3) });
        const title = svg("title");
        title.textContent = `${words[i]} -> ${words[k]}: ${w.toFixed(2)}`;
        rect.appendChild(title);
        out.appendChild(rect);
      }
    }
    return out;
  }

  function drawArcs() {
    const { words, n, at } = weights();
    // each word as wide as its letters (about 9 pixels each) and a gap, so that labels do not overlap
    const widths = words.map((w) => 20 + 9 * w.length), starts = [20];
    widths.forEach((w, i) => starts.push(starts[i] + w));
    const width = starts[n] + 20, base = 190;
    const out = svg("svg", { width, height: base + 40, class: "mh-svg", role: "img",
                             "aria-label": "attention arcs: from each word to the words it attends to (weight above 0.1)" });
    const x = (i) => starts[i] + widths[i] / 2;
    for (let i = 0; i < n; i++) {
      const label = svg("text", { x: x(i), y: base + 20, "text-anchor": "middle" });
      label.textContent = words[i];
      out.appendChild(label);
      for (let k = 0; k < n; k++) {
        const w = at(i, k);
        if (w < 0.1 || i === k) continue;
        const mid = (x(i) + x(k)) / 2, lift = Math.min(base - 10, 20 + Math.abs(x(i) - x(k)) / 3);
        out.appendChild(svg("path", { d: `M ${x(i)} ${base} Q ${mid} ${base - lift} ${x(k)} ${base}`, fill: "none",
                                      stroke: i < k ? "#0072b2" : "#d55e00", "stroke-opacity": w.toFixed(3),
                                      "stroke-width": (1 + 3 * w).toFixed(2) }));
      }
    }
    return out;
  }

  function drawInfo() {
    const model = data.models[state.model];
    const index = state.layer * H + state.head;
    info.replaceChildren();
    info.appendChild(el("h4", {}, `${model.name}: layer ${state.layer + 1}, head ${state.head + 1}`));
    const shared = data.shared[index] ? "yes" : "no";
    info.appendChild(el("p", {}, `Among the shared heads (chapter 3, seed ${data.notes.seed || "?"}: ${data.notes.shared || ""}): ${shared}.`));
    const gates = el("table", { class: "mh-table" });
    gates.appendChild(el("caption", {}, "Gate survival (chapter 3): the share of the lambda path this head's gate stayed open, per gated model"));
    const gh = el("tr"), gv = el("tr");
    gateNames.forEach((g) => { gh.appendChild(el("th", {}, g)); gv.appendChild(el("td", {}, data.gates[g][index].toFixed(2))); });
    gates.append(gh, gv);
    info.appendChild(gates);
    if (!model.probes) {
      info.appendChild(el("p", {}, `Not probed: chapter 4 probes the pretrained encoder and chapter 2's models; this is a chapter ${model.chapter} model.`));
      return;
    }
    for (const [task, probe] of Object.entries(model.probes)) {
      const acc = decode(probe.accuracy, 100);
      const rows = probe.labels.map((label, i) => [label, probe.counts[i], acc[i * L * H + index]]);
      rows.sort((a, b) => b[2] - a[2]);
      const table = el("table", { class: "mh-table" });
      table.appendChild(el("caption", {}, `${task.toUpperCase()} probe (chapter 4, ${probe.variant}): this head's accuracy per label, best first`));
      const header = el("tr");
      ["label", "test items", "accuracy (%)"].forEach((t) => header.appendChild(el("th", {}, t)));
      table.appendChild(header);
      rows.slice(0, 8).forEach(([label, count, a]) => {
        const tr = el("tr");
        [label, String(count), a.toFixed(1)].forEach((t) => tr.appendChild(el("td", {}, t)));
        table.appendChild(tr);
      });
      info.appendChild(table);
    }
  }

  function draw() {
    drawGrid();
    view.replaceChildren(state.view === "matrix" ? drawMatrix() : drawArcs());
    drawInfo();
    root.setAttribute("data-state", JSON.stringify(state));
  }
  draw();
}
